package pop3

import (
	"strconv"
	"time"
)

// capabilities lists what CAPA (RFC 2449) announces on this connection in
// its current state. Only what works here and now is listed: some clients
// refuse a server that offers USER and then refuses it.
func (c *conn) capabilities() []string {
	caps := []string{"TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE"}
	if c.stlsOffered() {
		caps = append(caps, "STLS")
	}
	if c.state == stateAuthorization {
		if c.plaintextAllowed() {
			caps = append(caps, "USER")
		}
		if mechs := c.usableMechanisms(); len(mechs) > 0 {
			line := "SASL"
			for _, m := range mechs {
				line += " " + m.name
			}
			caps = append(caps, line)
		}
	}
	if d := c.cfg.loginDelay; d > 0 {
		caps = append(caps, "LOGIN-DELAY "+strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10))
	}
	if c.cfg.expire != "" {
		caps = append(caps, "EXPIRE "+c.cfg.expire)
	}
	if c.cfg.implementation != "" {
		caps = append(caps, "IMPLEMENTATION "+c.cfg.implementation)
	}
	return caps
}

func (c *conn) cmdCAPA(rest string) {
	if !c.noArgs(rest) {
		return
	}
	c.ok("capability list follows")
	for _, line := range c.capabilities() {
		c.writeString(line)
		c.writeString("\r\n")
	}
	c.writeString(".\r\n")
}
