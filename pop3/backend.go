package pop3

import (
	"context"
	"crypto/tls"
	"io"
	"net"
)

// Backend authenticates clients and opens their maildrops. It is called once
// per successful-looking credential exchange; everything else a session does
// goes through the Session it returns.
type Backend interface {
	// Login checks the credentials and opens the maildrop. It must not return
	// a Session before the maildrop can really be served: the client gets
	// +OK only when Login succeeds. Errors should be *Error values (or wrap
	// one) so that the client gets the right response code; any other error
	// is answered as [SYS/TEMP].
	Login(ctx context.Context, conn *ConnInfo, cred *Credentials) (Session, error)
}

// Session is one opened maildrop in the TRANSACTION state. Message numbers
// are 1-based indexes into the slice returned by Messages and stay valid for
// the whole session. Deletion marks (DELE/RSET) are kept by the server, not
// the backend; the backend only learns of them in Update.
type Session interface {
	// Messages returns the maildrop snapshot taken at login. It is called
	// once, right after Login, and must not change afterwards.
	Messages() []Message

	// Retrieve returns the whole message n (1-based), exactly Size octets.
	// The server streams it through the dot-stuffing writer and closes it.
	// A read error part-way closes the client connection without the
	// terminating ".", so a truncated message is never taken as complete.
	Retrieve(ctx context.Context, n int) (io.ReadCloser, error)

	// Top returns the header of message n, the blank line that ends it and
	// at most lines lines of the body.
	Top(ctx context.Context, n int, lines int) (io.ReadCloser, error)

	// Retrieved is called after message n was sent completely (RETR only,
	// after the terminating "." was flushed to the client).
	Retrieved(ctx context.Context, n int)

	// Update applies the deletions after QUIT. deleted holds the message
	// numbers marked with DELE, in ascending order (possibly empty). An
	// error is reported to the client as -ERR and nothing may be reported
	// deleted that was not.
	Update(ctx context.Context, deleted []int) error

	// Close releases the session's resources (upstream connection, lock).
	// It is always called exactly once, after Update or when the connection
	// ends any other way, in which case nothing must change upstream.
	Close() error
}

// Message is one entry of a maildrop snapshot.
type Message struct {
	Size int64  // octets, as RETR sends them before dot-stuffing
	UIDL string // unique-id listing: 1-70 octets in 0x21-0x7E
}

// Credentials is what a client presented to log in. The fields are as the
// client sent them (any octets but NUL for PLAIN); the server logs
// Username and Mechanism, never Password or Token.
//
//   - USER/PASS: Username, Password.
//   - PLAIN (RFC 4616): AuthzID (often empty, or equal to Username),
//     Username, Password.
//   - LOGIN: Username, Password.
//   - OAUTHBEARER (RFC 7628): Username from the gs2 header's "a=" (empty if
//     the client left it out), Token. AuthzID stays empty.
//   - XOAUTH2: Username from "user=", Token.
type Credentials struct {
	// Mechanism is "USER" for USER/PASS, or the SASL mechanism name in
	// upper case ("PLAIN", "LOGIN", "OAUTHBEARER", "XOAUTH2").
	Mechanism string
	Username  string // authentication identity
	AuthzID   string // authorization identity, if the mechanism carried one
	Password  string // for USER, PLAIN, LOGIN
	Token     string // bearer token for OAUTHBEARER, XOAUTH2
}

// ConnInfo describes the client connection a login arrives on.
type ConnInfo struct {
	ID         string   // session id, unique per connection, for logs
	RemoteAddr net.Addr // the client (after PROXY protocol, when used)
	LocalAddr  net.Addr // the address the client connected to (behind a PROXY header, the one it carried)
	// ProxyAddr is the load balancer the connection really came from, on a
	// ListenerConfig.ProxyProtocol listener (where RemoteAddr is what its
	// header said), nil elsewhere.
	ProxyAddr net.Addr
	Listener  string               // ListenerConfig.Name of the listener it came in on
	TLS       *tls.ConnectionState // nil on a plaintext connection; set by implicit TLS or STLS
	// LoginAttempt counts the login attempts on this connection that
	// reached the Backend, this one included (1 for the first).
	LoginAttempt int
}

// FromLoopback reports whether the client is on this machine and its
// connection never left it: RemoteAddr is a loopback address (IsLoopback)
// and, behind a PROXY header, so is the proxy. A client on the proxy's own
// loopback is a remote client here: what it sends crossed the network
// between the proxy and us. This is the usual test for allowing plaintext
// logins (see Server.AllowPlaintext).
func (ci *ConnInfo) FromLoopback() bool {
	return IsLoopback(ci.RemoteAddr) && (ci.ProxyAddr == nil || IsLoopback(ci.ProxyAddr))
}
