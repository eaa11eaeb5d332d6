// Package pop3 is a POP3 server library: the protocol of RFC 1939 with the
// CAPA and response-code extensions of RFC 2449 and RFC 3206, STLS (RFC
// 2595), implicit TLS (RFC 8314) and SASL AUTH (RFC 5034), and nothing else.
// It knows no IMAP and no storage; whatever a maildrop is comes from a
// Backend, in the spirit of github.com/emersion/go-smtp.
//
// A Server accepts connections and runs one goroutine per connection. Each
// connection walks the RFC 1939 states:
//
//   - AUTHORIZATION: STLS on TLSStartTLS listeners, then USER/PASS or AUTH
//     with PLAIN, LOGIN, OAUTHBEARER or XOAUTH2 (Server.Mechanisms); APOP
//     is refused. Where Server.AllowPlaintext forbids secrets in the clear,
//     none of these is offered or accepted before TLS. Once the credentials
//     are in, the server calls Backend.Login; only a successful Login gives
//     the client +OK, so a client never sees success for a maildrop that
//     could not be opened. LoginTimeout bounds the whole state,
//     LoginLimiter can refuse addresses that failed too often.
//   - TRANSACTION: STAT, LIST, UIDL, RETR, TOP, DELE, RSET, NOOP and CAPA are
//     answered from the snapshot that Session.Messages returned. DELE and RSET
//     only change marks kept here; the backend learns of them in UPDATE.
//   - UPDATE: entered only by QUIT. Session.Update gets the marked message
//     numbers, then Session.Close. A connection that ends any other way
//     (drop, timeout, shutdown, panic) gets Session.Close only, so nothing
//     changes upstream.
//
// Message bodies are streamed from the backend's reader through a
// dot-stuffing writer to the client: no message is held in memory, and a
// message that fails part-way is never terminated with ".", so a client
// cannot take a truncated message for a complete one.
//
// Concurrency: Backend.Login is called for many connections at once, each
// call on a goroutine of its own that the connection waits for (so that the
// stack a login grows is not kept by the connection while its session
// idles). The methods of one Session, Close included, are only ever called
// from its own connection goroutine, one at a time, so a Session needs no
// locking of its own. The context passed to the backend is cancelled when the
// connection ends or the server is closed.
//
// Commands may be pipelined (RFC 2449 PIPELINING): answers are buffered and
// flushed when no further command is waiting in the input, or before the
// server blocks on the backend, so the bytes a client gets are the same as if
// it had sent the commands one at a time. The exception is STLS: what was
// sent behind it before the TLS handshake is discarded, never executed.
//
// A Session whose messages cost a round trip before their first octet (a
// proxy's) may implement RetrieveAheader: while the client RETRs in order it
// learns the next message too, and can fetch it while the current one is
// written.
//
// Behind a load balancer, a listener with ListenerConfig.ProxyProtocol takes
// each client's address from the PROXY protocol header (version 1 or 2) that
// trusted peers send first; it is read in the connection's goroutine, and
// from then on ConnInfo.RemoteAddr, the logs, the per-IP limit, the
// LoginLimiter and AllowPlaintext all see the client, not the balancer.
//
// Connections over Server.MaxConnections or MaxConnectionsPerIP get one -ERR
// line with the SYS/TEMP response code instead of the greeting (nothing on
// implicit TLS, where no handshake is spent on them) and are closed.
//
// Operations: Shutdown drains (new logins, and with RefuseDuringShutdown new
// connections, get -ERR [SYS/TEMP] server shutting down while logged-in
// sessions finish); Reconfigure changes the settings of new connections at
// run time; an Observer is told of connections, logins, commands, octets
// sent and session ends, for metrics.
//
// Logs: one line per event at info level or above, with the same field
// names throughout ("session", "remote", "user", "mechanism"): a refused
// connection, a login ("logged in", "login failed..." with the response
// code and how long Backend.Login took), a backend failure, and the end of
// every admitted session ("session ended": who, what and how it ended);
// everything else is at debug level. Server.Logger is a *zap.Logger rather
// than a *slog.Logger or an interface of this package's own because
// popbridge, its proxy and their tests all log and assert through zap, and
// zap's slog bridge (go.uber.org/zap/exp/zapslog) is a module this one does
// not require.
package pop3
