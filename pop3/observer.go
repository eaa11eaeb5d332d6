package pop3

import (
	"crypto/tls"
	"time"
)

// Observer is told what a Server does, for metrics. Every method is called
// from connection goroutines, many at once, and must return quickly (an
// atomic counter update, not I/O). A nil Server.Observer costs nothing.
type Observer interface {
	// ConnOpened: a connection was admitted within the connection limits.
	// It is a session from now until SessionEnded. On a TLSImplicit
	// listener the handshake is still to come.
	ConnOpened(ci *ConnInfo, mode TLSMode)
	// ConnRefused: a connection was turned away, or closed at login,
	// for reason, one of the Refuse* constants.
	ConnRefused(ci *ConnInfo, reason string)
	// TLSHandshake: a TLS handshake (implicit TLS or STLS) ended; on
	// success (err nil) ci.TLS holds the connection state.
	TLSHandshake(ci *ConnInfo, err error)
	// Login: a login attempt ended with result, one of the Login*
	// constants.
	Login(ci *ConnInfo, result string)
	// Command: a command was answered. name is the command in upper case,
	// or "unknown", or "too_long" for an over-long line; ok tells +OK from
	// -ERR.
	Command(name string, ok bool)
	// BytesSent: n octets were written to a client.
	BytesSent(n int)
	// SessionEnded: an admitted connection ended.
	SessionEnded(s *SessionSummary)
}

// Reasons of Observer.ConnRefused.
const (
	RefuseMaxConnections = "max_connections" // Server.MaxConnections reached
	RefusePerIP          = "per_ip"          // Server.MaxConnectionsPerIP reached
	RefuseLoginLimiter   = "login_limiter"   // LoginLimiter.Allow said no: -ERR [LOGIN-DELAY]
	RefuseShuttingDown   = "shutting_down"   // Shutdown is under way: -ERR [SYS/TEMP]
	RefuseUntrustedProxy = "untrusted_proxy" // ProxyProtocol listener, peer not Trusted: closed unread
	RefuseProxyHeader    = "proxy_header"    // ProxyProtocol listener, trusted peer sent no valid header in time
)

// Results of Observer.Login.
const (
	LoginOK           = "ok"
	LoginAuth         = "auth"          // bad credentials: -ERR [AUTH]
	LoginInUse        = "in_use"        // -ERR [IN-USE]
	LoginSysTemp      = "sys_temp"      // -ERR [SYS/TEMP]
	LoginSysPerm      = "sys_perm"      // -ERR [SYS/PERM]
	LoginDelay        = "login_delay"   // refused by the LoginLimiter: -ERR [LOGIN-DELAY]
	LoginShuttingDown = "shutting_down" // refused during Shutdown
	LoginOther        = "other"         // a backend error with another response code
)

// loginResult maps the response code of a failed login to its Login*
// result.
func loginResult(code string) string {
	switch code {
	case CodeAuth:
		return LoginAuth
	case CodeInUse:
		return LoginInUse
	case CodeSysTemp:
		return LoginSysTemp
	case CodeSysPerm:
		return LoginSysPerm
	case CodeLoginDelay:
		return LoginDelay
	}
	return LoginOther
}

// How a session ended (SessionSummary.End, and the "end" field of the
// session's last log line).
const (
	EndQuit         = "quit"          // QUIT without a maildrop open (before login)
	EndUpdateOK     = "update_ok"     // QUIT and a successful UPDATE
	EndUpdateFailed = "update_failed" // QUIT, and the UPDATE failed: nothing reported deleted
	EndDropped      = "dropped"       // the client went away (or a write to it failed)
	EndTimeout      = "timeout"       // idle, login or write timeout
	EndRefused      = "refused"       // closed at login by the LoginLimiter
	EndBadCommands  = "bad_commands"  // too many bad commands
	EndShutdown     = "shutdown"      // the server shut down
	EndError        = "error"         // a failure on our side (backend stream broke, panic, invalid listing)
)

// SessionSummary describes one admitted connection at its end.
type SessionSummary struct {
	Info      *ConnInfo // ID, addresses, listener; TLS as it ended
	User      string    // the user logged in as, or "" if the client never logged in
	Mechanism string    // "USER" or the SASL mechanism of the login; "" without one
	Listed    int       // messages in the maildrop at login
	Retrieved int       // RETRs sent in full
	Deleted   int       // messages deleted by a successful UPDATE (0 otherwise)
	BytesSent int64     // octets written to the client
	Duration  time.Duration
	End       string // one of the End* constants
}

// TLSVersionName is "1.0" … "1.3" for the TLS version of cs, or "none"
// without TLS.
func TLSVersionName(cs *tls.ConnectionState) string {
	if cs == nil {
		return "none"
	}
	switch cs.Version {
	case tls.VersionTLS10:
		return "1.0"
	case tls.VersionTLS11:
		return "1.1"
	case tls.VersionTLS12:
		return "1.2"
	case tls.VersionTLS13:
		return "1.3"
	}
	return tls.VersionName(cs.Version)
}
