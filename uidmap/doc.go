// Package uidmap gives every message of a maildrop a POP3 unique-id (UIDL)
// that never changes once a client has seen it, and keeps the per-maildrop
// state POP3 needs on top of IMAP: which UIDL belongs to which upstream
// message and the maildrop lock that keeps two sessions apart.
//
// The state lives behind the Store interface so that an embedded store (one
// instance) and a shared database store (several instances) are
// interchangeable; MemoryStore is the in-process implementation used by the
// demo and by unit tests.
//
// Store.Lock hands out a Lease: its Context is cancelled with ErrLeaseLost
// if a shared store loses the lock while a session holds it, and the session
// must then write nothing more (Lease.Bound gives writes a context that ends
// with the lease).
//
// A device of a user (Map.DeviceView) has hidden marks of its own over the
// user's UIDLs; a message that moves between folders served as one maildrop
// keeps its UIDL (Map.ResolveAdopting, Map.Vanished).
//
// Copy copies maildrops from one Store into another (popbridge state
// migrate). Importer seeds a maildrop with the UIDLs of a previous POP3
// server (popbridge import-uidl); uidmap/maildir reads them from a Dovecot
// maildir.
package uidmap
