package pop3

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/pires/go-proxyproto"
	"go.uber.org/zap"
)

// DefaultProxyHeaderTimeout is how long a connection on a ProxyProtocol
// listener may take to send its header when ProxyProtocol.HeaderTimeout is
// zero. A load balancer sends the header with the connection itself, so
// anything slower is not one.
const DefaultProxyHeaderTimeout = 10 * time.Second

// ProxyProtocol makes a listener take its clients' addresses from the PROXY
// protocol header (HAProxy's version 1 or 2) that a load balancer sends at
// the start of every connection, so that logs, connection limits, the
// LoginLimiter, AllowPlaintext and the backend see the client rather than
// the load balancer. See ListenerConfig.ProxyProtocol.
type ProxyProtocol struct {
	// Trusted reports whether peer, the address a connection really comes
	// from, may send a PROXY header: the load balancers. Required. Anyone
	// else could claim to be any client, so their connections are closed
	// unread (Observer.ConnRefused with RefuseUntrustedProxy). It is
	// called from connection goroutines, many at once, and may change its
	// answer at run time (a reload).
	Trusted func(peer net.Addr) bool
	// HeaderTimeout bounds the wait for the header
	// (DefaultProxyHeaderTimeout if zero, no limit but LoginTimeout if
	// negative), so that a peer that sends nothing cannot hold a
	// goroutine for long. It never runs past Server.LoginTimeout.
	HeaderTimeout time.Duration
}

// proxyHeaderBufSize is the read buffer for the header: a version 1 header
// must fit whole (107 octets), version 2 is read in as many pieces as its
// TLVs need. What arrives behind the header is the client's and is kept.
const proxyHeaderBufSize = 256

// readProxyHeader runs on a ProxyProtocol listener before anything else is
// said: it checks that the peer is trusted, reads its header and makes the
// address the header carries the connection's RemoteAddr (and the address
// the client connected to its LocalAddr) from here on, in ConnInfo, the
// logger and the net.Conn under TLS (where a tls.Config's
// GetConfigForClient sees it). It reports false, having logged and told
// the Observer, when the connection must be closed. It runs in the
// connection's goroutine: a slow peer holds up no one else.
func (c *conn) readProxyHeader(pp *ProxyProtocol) bool {
	peer := c.raw.RemoteAddr()
	c.info.ProxyAddr = peer
	if !pp.Trusted(peer) {
		c.refuseProxy(RefuseUntrustedProxy, "connection from an address not trusted to send a PROXY header", nil)
		return false
	}
	deadline := time.Time{}
	if t := orDefault(pp.HeaderTimeout, DefaultProxyHeaderTimeout); t > 0 {
		deadline = time.Now().Add(t)
	}
	if !c.loginDeadline.IsZero() && (deadline.IsZero() || c.loginDeadline.Before(deadline)) {
		deadline = c.loginDeadline
	}
	_ = c.raw.SetReadDeadline(deadline)
	br := bufio.NewReaderSize(c.raw, proxyHeaderBufSize)
	hdr, err := proxyproto.Read(br)
	_ = c.raw.SetReadDeadline(time.Time{})
	if err == nil {
		err = checkProxyHeader(hdr)
	}
	if err != nil {
		if c.srv.ctx.Err() != nil {
			return false // closed by Close: nothing to report
		}
		c.refuseProxy(RefuseProxyHeader, "no valid PROXY header from a trusted proxy", err)
		return false
	}

	pc := &proxiedConn{Conn: c.raw, remote: peer, local: c.raw.LocalAddr()}
	if n := br.Buffered(); n > 0 {
		rest, _ := br.Peek(n)
		pc.rest = append([]byte(nil), rest...)
	}
	// LOCAL (the proxy's own health check) and UNKNOWN carry no client:
	// the specification says to use the connection's own addresses.
	if hdr.Command.IsProxy() && hdr.SourceAddr != nil {
		pc.remote = hdr.SourceAddr
		if hdr.DestinationAddr != nil {
			pc.local = hdr.DestinationAddr
		}
	}
	c.plain, c.nc = pc, pc
	c.info.RemoteAddr, c.info.LocalAddr = pc.remote, pc.local
	return true
}

// checkProxyHeader refuses headers that describe no TCP connection: a
// datagram header on a stream makes no sense and would mislead every
// address check.
func checkProxyHeader(h *proxyproto.Header) error {
	if h.Command.IsLocal() || h.TransportProtocol.IsUnspec() || h.TransportProtocol.IsStream() {
		return nil
	}
	return fmt.Errorf("PROXY header for a datagram connection (%#x)", byte(h.TransportProtocol))
}

// refuseProxy closes a connection on a ProxyProtocol listener before its
// session starts: nothing is written (the peer is not known to speak
// POP3), the refusal is logged with the peer's address and counted.
func (c *conn) refuseProxy(reason, why string, err error) {
	fields := []zap.Field{zap.String("reason", why), zap.Stringer("proxy", c.info.ProxyAddr)}
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = errors.New("timed out waiting for the PROXY header")
		}
		fields = append(fields, zap.Error(err))
	}
	c.log.Info("connection refused", fields...)
	if o := c.cfg.observer; o != nil {
		o.ConnRefused(&c.info, reason)
	}
}

// proxiedConn is a connection after its PROXY header: it reports the
// addresses the header carried and first returns what arrived with the
// header (a TLS ClientHello, say), then reads on. Closing it closes the
// connection.
type proxiedConn struct {
	net.Conn
	rest          []byte
	remote, local net.Addr
}

func (p *proxiedConn) Read(b []byte) (int, error) {
	if len(p.rest) > 0 {
		n := copy(b, p.rest)
		p.rest = p.rest[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

func (p *proxiedConn) RemoteAddr() net.Addr { return p.remote }
func (p *proxiedConn) LocalAddr() net.Addr  { return p.local }
