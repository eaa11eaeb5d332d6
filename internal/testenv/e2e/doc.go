// Package e2e holds what the end-to-end tests of popbridge's POP3 side
// share (cmd/popbridge's, which run the binary, and internal/daemon's,
// which run the daemon in-process): a raw POP3 connection for checking
// exact protocol lines (Conn), a throw-away PKI for TLS listeners, a
// buffer to capture logs in, and polling.
package e2e
