// Package imapupstream is popbridge's IMAP side: one logged-in upstream
// connection per POP3 session, and the few operations a POP3 maildrop needs.
// It knows nothing of POP3.
//
// A session goes:
//
//	d, _ := imapupstream.NewDialer(cfg, log)   // once, at start-up
//	conn, err := d.Login(ctx, cred)            // dial, TLS, greeting, ID, LOGIN/AUTHENTICATE
//	mb, err := conn.Select(ctx)                // SELECT (read-write), UIDVALIDITY
//	msgs, err := conn.Snapshot(ctx)            // UID FETCH 1:* (UID RFC822.SIZE), one round trip
//	r, err := conn.Fetch(ctx, m)               // BODY.PEEK[] of msgs[i] streamed from the literal
//	r, err := conn.FetchAhead(ctx, m, next...) // the same, with one UID FETCH for the next ones sent while m streams
//	r, err := conn.Top(ctx, m, lines)          // BODY.PEEK[HEADER] + partial BODY.PEEK[TEXT]
//	err = conn.MarkSeen(ctx, uids)             // after RETR, if wanted
//	err = conn.Expunge(ctx, uids)              // in UPDATE: remove exactly these
//	err = conn.Move(ctx, uids, "Trash")         // or move them (UID MOVE, or COPY + Expunge)
//	conn.Close()                               // LOGOUT, close
//
// # Guarantees
//
//   - Nothing here sets \Seen except MarkSeen: bodies are fetched with
//     BODY.PEEK only.
//   - Expunge and Move touch exactly the UIDs they are given: UID EXPUNGE
//     with UIDPLUS, and without it never a bare EXPUNGE that would take
//     other clients' \Deleted messages along (see Conn.Expunge).
//   - Message readers stream from the IMAP literal (no message is held in
//     memory), end with io.EOF only after the exact literal size arrived and
//     the server completed the command (or, for a message asked for ahead
//     by FetchAhead, the next answer started), and otherwise fail with
//     ErrUnavailable.
//   - Fetch and Top hand out nothing of an answer that does not show the
//     listed message's UID and size (verify.go): Courier answers for a
//     message expunged by another client with a stand-in of its own.
//   - A message expunged by someone else gives ErrNoSuchMessage and the
//     connection stays usable.
//
// # Under go-imap
//
// go-imap v2 does the IMAP work, with two exceptions that sit below it on
// the connection. The pre-login step (internal/prelogin) reads the
// greeting, runs STARTTLS and sends ID with the client's address, which
// imap.IDData cannot carry, then replays the greeting to go-imap (to a
// Dovecot that names itself in its greeting, the ID goes out in front of
// the LOGIN, and its answer is read off before go-imap reads on). The lean
// reader (internal/lean) reads the snapshot's 50,000-line answers with a
// parser of its own, about a sixteenth of go-imap's cost, and passes every
// other response through to go-imap in order. For Fetch and FetchAhead it
// parks go-imap's reader and hands the connection to the caller's
// goroutine, which sends the UID FETCH (BODY.PEEK[]) commands and reads
// their answers itself (direct.go), so that messages stream without a
// hand-off between goroutines; what else the server says meanwhile is
// passed on to go-imap, in order, when it gets the connection back.
// internal/watchdog bounds every wait on the server (see below).
//
// # Errors and timeouts
//
// Errors wrap ErrAuthFailed, ErrInUse, ErrUnavailable, ErrNoSuchMessage,
// ErrMailboxChanged, ErrNoMailbox or ErrConfig (use errors.Is); the server's
// *imap.Error stays in the chain. Login's dial, TLS, greeting and ID are
// bounded by Config.ConnectTimeout; LOGIN/AUTHENTICATE, each command, and
// each stall while a literal streams, by Config.CommandTimeout. When a timeout fires or the context of the call is
// cancelled the connection is closed (go-imap's commands cannot be abandoned
// otherwise), the call returns ErrUnavailable wrapping
// context.DeadlineExceeded (or the context's error), and the Conn is done.
//
// # Concurrency
//
// A Dialer is safe for concurrent use; a Conn belongs to one goroutine at a
// time. Cancel a call's context to interrupt it from elsewhere.
//
// # Logging
//
// The zap logger given to NewDialer gets the user name, the upstream address,
// mechanisms, timings and how deletions were done (field "method"); never a
// password, a token or message content.
//
// internal/testenv/dovecot runs a throw-away Dovecot for its tests.
package imapupstream
