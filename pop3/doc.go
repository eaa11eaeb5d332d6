// Package pop3 is a POP3 server library: the protocol of RFC 1939 with the
// CAPA and response-code extensions of RFC 2449 and RFC 3206, and nothing
// else. It knows no IMAP and no storage; whatever a maildrop is comes from a
// Backend, in the spirit of github.com/emersion/go-smtp.
//
// A Server accepts connections and runs one goroutine per connection. Each
// connection walks the RFC 1939 states:
//
//   - AUTHORIZATION: USER/PASS (APOP is refused). Once both are in, the
//     server calls Backend.Login; only a successful Login gives the client
//     +OK, so a client never sees success for a maildrop that could not be
//     opened.
//   - TRANSACTION: STAT, LIST, UIDL, RETR, TOP, DELE, RSET, NOOP and CAPA are
//     answered from the snapshot that Session.Messages returned. DELE and RSET
//     only change marks kept here; the backend learns of them in UPDATE.
//   - UPDATE: entered only by QUIT. Session.Update gets the marked message
//     numbers, then Session.Close. A connection that ends any other way
//     (drop, timeout, shutdown, panic) gets Session.Close only, so nothing
//     changes upstream.
//
// Message bodies are streamed from the backend's reader through a
// dot-stuffing writer to the client: no message is held in memory, and a
// message that fails part-way is never terminated with ".", so a client
// cannot take a truncated message for a complete one.
//
// Concurrency: Backend.Login is called from many connection goroutines at
// once. The methods of one Session, Close included, are only ever called
// from its own connection goroutine, one at a time, so a Session needs no
// locking of its own. The context passed to the backend is cancelled when the
// connection ends or the server is closed.
//
// Commands may be pipelined (RFC 2449 PIPELINING): answers are buffered and
// flushed when no further command is waiting in the input, or before the
// server blocks on the backend, so the bytes a client gets are the same as if
// it had sent the commands one at a time.
package pop3
