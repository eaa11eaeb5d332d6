// Package proxy is where the POP3 front end, the IMAP upstream and the UID
// map meet: Backend implements pop3.Backend by logging in to the upstream as
// the POP3 user, taking the maildrop lock, snapshotting the mailbox and
// naming its messages through uidmap, then serving the session's commands
// from that snapshot and applying deletions per the configured policy.
// Options.Routes send the users of other mail domains to other upstreams:
// a login's domain picks its upstream, uidmap key and on_dele.
// OpenMaildrop is that opening of a maildrop on its own, for what works on
// one outside a POP3 session (popbridge state mark-old, import-uidl).
//
// Of the library packages it is the only one that knows pop3, imapupstream
// and uidmap together; the binary (internal/daemon) only wires them up.
package proxy
