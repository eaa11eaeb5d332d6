// Package proxy is where the POP3 front end, the IMAP upstream and the UID
// map meet: Backend implements pop3.Backend by logging in to the upstream as
// the POP3 user, taking the maildrop lock, snapshotting the mailbox and
// naming its messages through uidmap, then serving the session's commands
// from that snapshot and applying deletions per the configured policy.
//
// The policy around a login lives here too:
//   - Options.Routes send the users of other mail domains to other
//     upstreams: a login's domain picks its upstream, uidmap key and on_dele;
//   - Options.Hook (an nginx auth_http service) may refuse, rewrite or route
//     a login first, and a master user logs in only once someone checked
//     the user's own password (the hook, or Options.VerifyUpstream);
//   - Options.DeviceSeparator makes "user#phone" a device with its own
//     hidden marks over the user's UIDLs (views.go), Options.Window limits
//     the listing, Options.LoginDelay holds back logins that come too soon;
//   - Options.Folders serves several mailboxes as one maildrop (folders.go);
//   - WithOAuth2 logs the users of OAuth2 upstreams in with their grants.
//
// OpenMaildrop is the opening of a maildrop on its own, for what works on
// one outside a POP3 session (popbridge state mark-old, import-uidl).
//
// Of the library packages it is the only one that knows pop3, imapupstream
// and uidmap together; the binary (internal/daemon) only wires them up.
package proxy
