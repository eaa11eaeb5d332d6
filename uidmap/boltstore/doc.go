// Package boltstore is the embedded uidmap.Store (state.driver: bolt): one
// bbolt file, owned by one popbridge process, with the maildrop lock in that
// process's memory. It is the default: nothing to set up, and the fastest.
// Several instances share state through uidmap/pgstore instead. It also
// keeps the sealed upstream OAuth2 grants (internal/grants.Store, grants.go),
// with their refresh leases in memory, and the app passwords' argon2id
// hashes (internal/apppass.Store, apppass.go).
package boltstore
