// Package pgstore is the shared uidmap.Store (state.driver: postgres): the
// UIDLs, hidden marks and fingerprints of every maildrop, and the maildrop
// locks, in PostgreSQL, so that several popbridge instances behind a load
// balancer serve the same UIDLs and keep one session per maildrop across
// all of them. It passes the same conformance suite (uidmap/storetest) as
// the embedded store.
//
// Schema (created and migrated by Open; schema.go):
//
//	popbridge_schema_version (version)
//	popbridge_maildrops (id, upstream, username, mailbox, uidvalidity, nrecords)   unique (upstream, username, mailbox)
//	popbridge_records   (maildrop_id, uid, uidl, hidden, size, date, msgid_hash, header_hash)   primary key (maildrop_id, uid)
//	popbridge_locks     (upstream, username, mailbox, token, owner, expires_at)   primary key (upstream, username, mailbox)
//	popbridge_grants        (upstream, username, version, sealed)   primary key (upstream, username); version from popbridge_grant_versions
//	popbridge_grant_leases  (upstream, username, holder, expires_at)   primary key (upstream, username)
//	popbridge_app_passwords (upstream, username, id, label, hash, created_at, last_used)   primary key (upstream, username, id)
//	popbridge_logins    (upstream, username, mailbox, at)   primary key (upstream, username, mailbox)
//
// It is also the shared internal/grants.Store (grants.go): a user's upstream
// OAuth2 grant, sealed by popbridge, swapped by version in one statement,
// and a refresh lease that is taken like a maildrop lock but never renewed
// (a refresh is shorter than its lease); and the app passwords' hashes.
//
// A record row is narrow (scalars and two short hashes, no mail content),
// and a login's Load is one query (one snapshot) over the primary key,
// decoded without per-row allocations and put in UID order in the client.
// Apply is one transaction that locks the maildrop's row first, so
// concurrent changes to one maildrop, from any instance, are serialised and
// checked against Change.Expect: the loser of a race gets uidmap.ErrStale
// and writes nothing. Large batches (a first login on a big mailbox) are
// written with COPY.
//
// The maildrop lock is a lease: a row in popbridge_locks with an expiry set
// from the database's clock (never an instance's). Lock inserts the row, or
// takes over one that has expired; no connection is held for it during the
// session. One goroutine per Store renews every lease it holds, in one
// UPDATE, three times per lease period; release deletes the row if it is
// still this session's. An instance that dies stops renewing, and its locks
// expire after at most one lease. A lease not renewed for three quarters of
// its period (by the instance's clock, counted from when the last renewal
// was sent), or found taken over, is lost: its uidmap.Lease is cancelled
// with ErrLeaseLost, before another instance can take the row.
//
// The DSN is anything pgx accepts (postgres://user:password@host/db?…, or
// key=value pairs), including pgxpool's pool_* parameters, e.g.
// pool_max_conns (default DefaultMaxConns).
package pgstore
