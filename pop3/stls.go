package pop3

import (
	"crypto/tls"

	"go.uber.org/zap"
)

// stlsOffered reports whether STLS (RFC 2595) can be used on this
// connection now: a TLSStartTLS listener, no TLS yet, before login.
func (c *conn) stlsOffered() bool {
	return c.lc.TLS == TLSStartTLS && c.tlsConfig() != nil &&
		c.info.TLS == nil && c.state == stateAuthorization
}

// cmdSTLS starts TLS on the connection. Only the AUTHORIZATION state
// dispatches it.
func (c *conn) cmdSTLS(rest string) {
	switch {
	case c.info.TLS != nil:
		c.fail("", "TLS is already active")
		return
	case !c.stlsOffered():
		// fetchmail sends STLS even when CAPA did not offer it: it needs
		// a clear answer, and is not misbehaving.
		c.fail("", "STLS not available on this connection")
		return
	}
	if !c.noArgs(rest) {
		return
	}
	c.ok("Begin TLS negotiation")
	if !c.flush() {
		return
	}
	// Whatever came after the STLS line was sent before TLS, by the
	// client or by someone in the middle: it is dropped, never executed
	// (the STARTTLS command injection of CVE-2011-0411). br.Reset below
	// discards it.
	if n := c.br.Buffered(); n > 0 {
		c.log.Warn("discarding input sent after STLS before the TLS handshake", zap.Int("octets", n))
	}
	c.nc = tls.Server(c.plain, c.tlsConfig())
	if !c.handshake() {
		c.closing = true
		return
	}
	c.br.Reset(c.nc)
	c.bw.Reset(c.deadlineWriter())
	// A fresh AUTHORIZATION state (RFC 2595 section 4): nothing said in
	// the clear carries over. There is no new greeting.
	c.user = ""
	c.bad = 0
	c.log.Debug("TLS started with STLS", zap.String("version", tls.VersionName(c.info.TLS.Version)))
}
