// Package dovecottest runs a real, throw-away Dovecot (Debian's dovecot-imapd,
// optionally dovecot-pop3d) for tests.
//
// Every call to Start gets its own Dovecot master process with its own
// configuration, sockets, state, log and mail under a private directory, and
// free loopback ports, so tests and test binaries may run in parallel. The
// server is stopped and its directory removed when the test ends; when the test
// failed, Dovecot's log is printed with t.Log first.
//
// Authentication accepts any user name with the password Server.Password (a
// wrong password is refused), so tests isolate themselves by using unique user
// names (see User). Mail is stored as maildir under a home per user, owned by
// the system user mail (uid/gid 8), which is how Dovecot must run as root.
//
// When /usr/sbin/dovecot is missing the test is skipped, or fails when the
// environment variable CI is set, so that CI never silently skips these tests.
// Install it with: apt-get install dovecot-imapd dovecot-pop3d
//
// Starting a server takes roughly 100–200 ms; tests that only need a mailbox
// can share one server per package with Shared.
package dovecottest
