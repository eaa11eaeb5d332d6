// Command popbench measures popbridge side by side with the fastest way to do
// the same work directly over IMAP (the "IMAP ceiling": a lean IMAP client of
// its own against the same Dovecot) and with Dovecot's own POP3 server
// bridging over its imapc storage, on the same mailboxes.
//
// It needs what the tests need: Debian's dovecot-imapd (dovecot-pop3d for
// the Dovecot column), root, and the popbridge source it is part of:
//
//	go run ./cmd/popbench                          # everything, 5 runs each (about 15 minutes on 2 cores)
//	go run ./cmd/popbench -quick                   # a smoke run with small sizes (about 3 minutes)
//	go run ./cmd/popbench -scenarios list,retr -runs 7
//	go run ./cmd/popbench -chart docs/benchmarks.png -markdown docs/benchmarks.md
//
// It starts a throw-away Dovecot on loopback (its own configuration under a
// temporary directory, mail in maildir written directly), builds popbridge
// and runs `popbridge serve` against it as a separate process (so that its
// memory can be measured), and, when dovecot-pop3d is installed, a second
// Dovecot serving POP3 from the first one over imapc. Scenarios run
// interleaved (each run measures every target, in a rotating order) and the
// median of the runs is reported. See docs/benchmarks.md.
package main
