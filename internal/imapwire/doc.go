// Package imapwire is what popbridge's IMAP stream readers (imapupstream's
// pre-login step and lean reader, internal/faultrelay, cmd/popbench) need to
// know alike of IMAP's wire format: where a line announces a literal, the
// octets that follow it outside the line structure.
package imapwire
