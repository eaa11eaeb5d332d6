// Package demo is the upstream of `popbridge demo`: an in-memory IMAP
// server (go-imap's imapmemserver) with user demo/demo and sample messages
// that exercise POP3 framing, so the demo needs no mail server at all.
package demo
