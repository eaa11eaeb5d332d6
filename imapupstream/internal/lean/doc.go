// Package lean reads chosen IMAP answers below go-imap, with parsers of
// their own.
//
// A Conn sits between the connection (after TLS) and go-imap. It passes
// every byte through, except while a lean command runs: then the answer
// lines the command asked for, and its tagged completion, go to the
// command's own parser instead of go-imap's decoder, and everything else
// (EXISTS, EXPUNGE, a FETCH of another shape, literals) still reaches
// go-imap in order, so its view of the mailbox stays right.
//
// Why: the snapshot of a 50,000-message mailbox is 50,000 lines of
// "* n FETCH (UID u RFC822.SIZE s)". go-imap decodes each into a message
// with a channel, items and two read deadlines, about 3 µs a line, more
// than the server takes to produce it. Parsing those lines here
// (ParseSizeFetch) costs a tenth of that.
//
// Take goes further: it parks go-imap's reader and lets the owner's
// goroutine read the connection itself (Direct) until Release, passing on
// to go-imap, in order, whatever it does not want (take.go). A message
// read through go-imap is handed between its goroutine and ours several
// times; read this way, a stream of messages has no hand-off at all.
package lean
