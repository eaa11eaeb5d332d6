// Package faultrelay is a TCP relay for tests that puts faults between an
// IMAP client and its server: latency, a bandwidth limit, stalls, cuts after
// a number of bytes or at a given IMAP command, refused connections, and
// capabilities hidden from the client.
//
//	r := faultrelay.Start(t, dv.IMAPAddr)   // listens on 127.0.0.1:0; closed when the test ends
//	... point the client at r.Addr() ...
//	f := r.CutOnCommand("UID EXPUNGE", "")  // one-shot: the next UID EXPUNGE ends its connection
//	... <-f.Fired() ...
//	r.Stall(faultrelay.BothDirs); r.Release()
//	r.HideCapabilities("UIDPLUS", "MOVE")
//
// Every relayed connection has its own connection to the upstream, dialled
// when the client connects. Faults apply to the connections open when they
// are armed and to later ones; they may be armed and disarmed at any time,
// from any goroutine. Cuts close both sides with a FIN, after every byte
// forwarded before the cut has been written, so a client sees exactly the
// bytes the fault let through and then the end of the stream. A cut after a
// forwarded command (CutAfterCommand) stops the way back before the command
// leaves, so its answer never reaches the client, however fast the server
// is; server bytes still on their way at that moment are dropped with it,
// as on a real broken connection.
//
// Line-level faults (CutOnCommand, CutAfterCommand, HideCapabilities) read
// the stream as IMAP: lines, and literals ({n}, {n+}, ~{n}; see
// internal/imapwire) passed through untouched, so message text is never
// taken for a command or a response. They need plaintext IMAP; after STARTTLS a connection is relayed
// as raw bytes. While one is armed, an incomplete line is held back until its
// end, so that it can be matched whole; otherwise bytes are forwarded as they
// arrive.
//
// Close ends every connection and goroutine of the relay and returns once
// they are gone.
package faultrelay
