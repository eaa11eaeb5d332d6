// Package pop3client is a POP3 client (RFC 1939, with CAPA and response
// codes of RFC 2449, STLS of RFC 2595 and AUTH PLAIN of RFC 5034): the one
// popbridge uses wherever it speaks POP3 as a client, in three roles.
//
//   - Tests: it undoes dot-stuffing exactly and keeps every byte, so a test
//     can compare what a client receives with what the IMAP server holds;
//     and it gives raw access (Send, ReadLine, Status, Cmd, Conn) for tests
//     that probe protocol edge cases.
//   - popbridge import-uidl, which reads an old server's UIDLs: DialContext
//     with implicit TLS or STLS and timeouts, CAPA, Login choosing USER/PASS
//     or AUTH PLAIN, listings, and Headers (pipelined TOP n 0 with a size
//     limit); nothing there changes the old maildrop.
//   - popbench: lean enough not to bill the servers for its own work. A
//     listing allocates only the entries the caller keeps, commands are
//     built without allocating, and RetrReader and TopReader stream a
//     message (DotReader, whose WriteTo hands the client's buffer straight
//     to the writer) without ever holding it.
//
// A Client is one connection, used by one goroutine at a time. Each method
// sends its command and reads the whole answer, except RetrReader,
// TopReader and DotReader, whose DotReader must be read to io.EOF (or
// closed) before the next command.
//
// A -ERR answer is an *ErrResponse, which carries the line and its RFC 2449
// response code. A multi-line answer cut off by the end of the connection
// fails with ErrNoTerminator: what came before is truncated. By default the
// client is strict, as tests want it: every line must end with CRLF.
// Options.AllowBareLF accepts the bare LF of sloppy servers instead.
//
// Status and listing lines longer than the line limit
// (DefaultMaxLineLength) are cut at it, the rest read and dropped; the
// lines of a message are not limited. Deadlines come from Options.Timeout
// (every read and write waits at most that long), from SetDeadline, or, for
// DialContext, from its context: cancelling it closes the connection.
package pop3client
