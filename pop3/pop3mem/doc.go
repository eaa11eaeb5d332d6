// Package pop3mem is an in-memory pop3.Backend, for tests, examples and
// demonstrations, in the spirit of go-imap's imapmemserver: users with a
// password (and, for OAUTHBEARER and XOAUTH2, a bearer token), each with a
// maildrop held in memory.
//
// It behaves as RFC 1939 asks of a maildrop: a session locks it (a second
// login gets -ERR [IN-USE] until the first session ends), the session
// serves the snapshot taken at login, and only a successful UPDATE (QUIT)
// removes the messages the client deleted. Nothing is kept anywhere else.
package pop3mem
