// Package cyrus runs a real, throw-away Cyrus IMAP 3.6 server (Debian
// bookworm's cyrus-imapd) on a loopback port, for integration tests only.
//
//	srv := cyrus.Start(t)                      // or Start(t, WithPassword(…))
//	user := srv.User(t)                        // a new user with an empty INBOX
//	uid := srv.Append(t, user, "INBOX", msg)   // APPENDUID; flags may follow
//	c := srv.Client(t, user)                   // a logged-in go-imap client
//	v := srv.RecreateInbox(t, user)            // delete and re-create the INBOX: the new UIDVALIDITY
//	... dial srv.IMAPAddr with user / srv.Password ...
//	srv := cyrus.Start(t, cyrus.WithPOP3())    // also Cyrus's own pop3d, on srv.POP3Addr
//
// cyrus-imapd cannot be installed next to dovecot-imapd (both provide
// imap-server), and cyrus-common, which installs, pulls in an MTA (exim4)
// and creates the system user cyrus: both packages are unpacked without
// installing them, and only the libraries they need are installed:
//
//	apt-get install --no-install-recommends libclamav12 libical3 libxapian30 libzephyr4 sasl2-bin libsasl2-modules
//	apt-get download cyrus-imapd cyrus-common
//	dpkg -x cyrus-common_*.deb /opt/popbridge-test/cyrus
//	dpkg -x cyrus-imapd_*.deb /opt/popbridge-test/cyrus
//
// WithPOP3 needs cyrus-pop3d too, unpacked the same way
// (apt-get download cyrus-pop3d; dpkg -x cyrus-pop3d_*.deb into the same tree).
//
// The harness uses the tree under DefaultDir, or the directory named by the
// environment variable POPBRIDGE_CYRUS_DIR (its libraries are found through
// LD_LIBRARY_PATH). When something is missing the test is skipped with a
// hint, or fails when the environment variable CI is set. It needs root.
//
// Every Start runs its own Cyrus master with a private imapd.conf and
// cyrus.conf (one service: imapd on the loopback port; plain IMAP, no TLS;
// with WithPOP3 a second one, pop3d on another loopback port, plain POP3
// with USER/PASS, whose UIDLs follow imapd.conf's uidl_format).
// Every path Cyrus uses is set there (configdirectory, partition-default,
// proc_path, the lock and socket paths), so no namespace is needed for the
// files; master runs as PID 1 of a private PID namespace so that killing it
// at the end of the test ends every imapd it started. Cyrus runs as the
// system user mail (cyrus_user/cyrus_group: there is no user cyrus). It logs
// to syslog, which a container may not have: Log has only what master and
// imapd write to standard error (master -D).
//
// Passwords are checked by SASL auxprop against a private sasldb
// (sasl_pwcheck_method: auxprop, sasl_auxprop_plugin: sasldb,
// sasl_sasldb_path), to which User adds each user with saslpasswd2 -f. The
// admin user (AdminUser) creates each user's INBOX with CREATE user.NAME.
// altnamespace is on, so a user's other mailboxes are top level ("Trash",
// separator "."), as on Dovecot; WithSetting("altnamespace", "no") gives
// Debian's default, with them below INBOX ("INBOX.Trash"). A wrong password gets NO after 3 s
// (failedloginpause). After login Cyrus still lists LOGINDISABLED among its
// capabilities.
package cyrus
