// Package dovecot runs a real, throw-away Dovecot (Debian's dovecot-imapd,
// and dovecot-pop3d with WithPOP3) for tests.
//
//	srv := dovecot.Start(t)                 // or Start(t, WithTLS(), WithPOP3(), …)
//	user := dovecot.User(t)                 // a fresh user name: any name logs in
//	uid := srv.Append(t, user, "INBOX", msg)    // APPENDUID
//	c := srv.Client(t, user)                    // a logged-in go-imap client
//	... Dial srv.IMAPAddr with user / srv.Password ...
//
// Every Start runs its own Dovecot master (`dovecot -F -c FILE`, a child of the
// test process) with its own configuration, sockets, state, log and mail in a
// private directory, on free loopback ports, so tests and test binaries may
// run in parallel. The directory is a short one under /tmp rather than
// t.TempDir(), because Dovecot's Unix sockets live there and socket paths
// are limited to about 100 bytes; it is traversable by Dovecot's unprivileged
// processes and removed when the test ends. At the end of the test Dovecot is
// stopped and waited for; if the test failed, its log is printed first.
//
// Authentication accepts any user name with the password Server.Password and
// refuses a wrong one (Dovecot answers a failed login after up to 0.5 s; its
// auth penalty for repeated failures is switched off). Each user gets a home
// with mail in maildir (~/Maildir), owned by the system user mail (uid/gid 8),
// which is how Dovecot must store mail when it runs as root.
//
// Options: WithTLS (a test CA and a certificate for 127.0.0.1/localhost
// generated in Go; STARTTLS on the IMAP port, implicit TLS on IMAPSAddr),
// WithPOP3 (Dovecot's own POP3, for comparisons), WithoutCapabilities (e.g.
// "UIDPLUS", "MOVE": an explicit imap_capability list of Dovecot's defaults
// minus those), WithMasterUser, WithOAuth2 (XOAUTH2/OAUTHBEARER against a
// token endpoint served by the test; see IssueToken),
// WithOAuth2Introspection (the same against a real authorization server's
// RFC 7662 introspection, e.g. internal/testenv/oidc), WithPassword and
// WithConfig (raw configuration lines).
//
// Start is a thin wrapper over Launch, which does the same outside a test
// (cmd/popbench runs its Dovecots with it): it returns errors instead of
// failing a test, and Close stops the server and removes its directory.
// Launch also takes WithDir (a directory of the caller's, kept) and
// WithRawConfig (the caller's whole dovecot.conf, for one IMAP or POP3
// listener); Server.PID names the server's process group, and WriteMaildir
// is FillMaildir returning an error. What the test servers share with
// internal/testenv/courier (directories, ports, greetings, user names, the
// CI rule below) is in internal/testenv.
//
// When /usr/sbin/dovecot is missing the test is skipped with a hint, or fails
// when the environment variable CI is set, so that CI never silently skips
// these tests. Install it with: apt-get install dovecot-imapd dovecot-pop3d.
// Running Dovecot this way needs root.
//
// Start takes about 120–150 ms on a 2-core machine and stopping at the end
// about 30 ms, so one server per test is fine; there is no shared server.
package dovecot
