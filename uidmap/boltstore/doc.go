// Package boltstore is the embedded uidmap.Store (state.driver: bolt): one
// bbolt file, owned by one popbridge process, with the maildrop lock in that
// process's memory. It is the default: nothing to set up, and the fastest.
// Several instances share state through uidmap/pgstore instead. It also
// keeps the sealed upstream OAuth2 grants (internal/grants.Store, grants.go)
// and app passwords' hashes, with the grants' refresh leases in memory.
package boltstore
