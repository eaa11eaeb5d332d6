// Command popbridge is an IMAP-to-POP3 bridging proxy: it speaks POP3 to
// clients and serves their maildrops from an existing IMAP server.
//
// Usage:
//
//	popbridge serve [-config FILE]
//	popbridge demo
//	popbridge check-config [-config FILE]
//	popbridge import-uidl [-config FILE] -user USER (-pop3 HOST:PORT | -dovecot-uidlist FILE) [-force] [-dry-run]
//	popbridge version
package main
