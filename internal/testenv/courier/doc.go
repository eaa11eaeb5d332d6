// Package courier runs a real, throw-away Courier IMAP 5.0 server (Debian
// bookworm's courier-imap) on a loopback port, for integration tests only.
//
//	srv := courier.Start(t)                   // or Start(t, WithPassword(…), WithSetting(…))
//	user := srv.User(t)                       // a new user with an empty INBOX
//	uid := srv.Append(t, user, "INBOX", msg)  // APPENDUID
//	c := srv.Client(t, user)                  // a logged-in go-imap client
//	... dial srv.IMAPAddr with user / srv.Password ...
//	srv := courier.Start(t, courier.WithPOP3()) // also Courier's own pop3d, on srv.POP3Addr
//
// courier-imap cannot be installed next to dovecot-imapd (both provide
// imap-server), so its files are unpacked without installing it, and its
// dependencies are installed normally:
//
//	apt-get install --no-install-recommends courier-base courier-authdaemon \
//		courier-authlib-userdb courier-authlib libcourier-unicode4 libgamin0 libidn12 libgdbm6
//	apt-get download courier-imap
//	dpkg -x courier-imap_*.deb /opt/popbridge-test/courier-imap
//
// WithPOP3 needs courier-pop too (its dependencies are courier-imap's),
// unpacked into the same tree: apt-get download courier-pop; dpkg -x.
//
// The harness uses the tree under DefaultDir, or the directory named by the
// environment variable POPBRIDGE_COURIER_DIR. When something is missing the
// test is skipped with a hint, or fails when the environment variable CI is
// set. It needs root.
//
// Every Start runs its own authdaemond (with the authuserdb module) and
// couriertcpd → imaplogin → imapd, started the way Debian's init script does,
// with Debian's imapd settings from the unpacked etc/courier/imapd (plain IMAP,
// no TLS); with WithPOP3 also couriertcpd → courierpop3login → courierpop3d
// with Debian's etc/courier/pop3d settings (plain POP3, USER/PASS). Courier's
// pop3d serves UIDLs of its own, "UID<n>-<uidv>" from the maildir's
// courierpop3dsizelist: n counted from 1 in the order it first saw the
// files, uidv the time of its first session; not the IMAP UIDs. Courier's authentication socket and configuration directory are
// compiled-in paths, so the server runs in private mount and PID namespaces
// in which its own directory is bind-mounted over /etc/courier and
// /run/courier/authdaemon: servers run in parallel and never touch the system
// authdaemond, whose service need not run. Killing the namespace's first
// process at the end of the test ends every process of the server, including
// the gamin server that imapd starts. If the test failed, Courier's log is
// printed first.
//
// Users live in a private userdb (rebuilt with makeuserdb for each new user,
// which authdaemond picks up while running) with mail in ~/Maildir, owned by
// the system user mail (uid/gid 8). Courier answers a wrong password with NO
// after about 5 seconds.
package courier
