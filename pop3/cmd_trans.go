package pop3

import (
	"strconv"

	"go.uber.org/zap"
)

func (c *conn) cmdSTAT(rest string) {
	if !c.noArgs(rest) {
		return
	}
	count, size := c.drop.stat()
	c.cmdOK = true
	c.writeNumLine("+OK ", int64(count), size)
}

func (c *conn) cmdLIST(rest string) {
	count, size := c.drop.stat()
	c.listing(rest, strconv.Itoa(count)+" messages ("+strconv.FormatInt(size, 10)+" octets)",
		func(prefix string, n int, m Message) { c.writeNumLine(prefix, int64(n), m.Size) })
}

func (c *conn) cmdUIDL(rest string) {
	c.listing(rest, "unique-id listing follows",
		func(prefix string, n int, m Message) { c.writeNumStrLine(prefix, int64(n), m.UIDL) })
}

// listing answers LIST and UIDL: without an argument a multi-line listing of
// the messages not marked deleted, with one the single line "+OK n value".
func (c *conn) listing(rest, header string, line func(prefix string, n int, m Message)) {
	args := splitArgs(rest)
	switch len(args) {
	case 0:
		c.ok(header)
		// 50,000 lines are a megabyte or more: through the body writer,
		// in 128 KiB writes rather than 4 KiB ones.
		saved, big := c.useBodyWriter()
		for n, m := range c.drop.listed() {
			line("", n, m)
		}
		c.writeString(".\r\n")
		c.restoreWriter(saved, big)
	case 1:
		n, ok := c.msgArg(args[0])
		if !ok {
			return
		}
		c.cmdOK = true
		line("+OK ", n, c.drop.message(n))
	default:
		c.fail("", "too many arguments")
		c.badCommand()
	}
}

func (c *conn) cmdRETR(rest string) {
	n, ok := c.oneMsgArg(rest)
	if !ok {
		return
	}
	c.flush() // earlier answers go out before we wait for the backend
	rc, err := c.retrieve(n)
	if err != nil {
		c.backendFailed("RETR", n, err)
		return
	}
	size := c.drop.message(n).Size
	sent, complete := c.sendBody("RETR", n, strconv.FormatInt(size, 10)+" octets", rc)
	if !complete {
		return
	}
	if sent != size {
		// Clients such as Outlook compare LIST sizes with what RETR
		// delivers; a difference is a backend bug worth seeing.
		c.log.Warn("RETR sent a different size than listed",
			zap.Int("msg", n), zap.Int64("listed", size), zap.Int64("sent", sent))
	}
	// Retrieved promises the client has the whole message: only after
	// the terminating "." has really left.
	if c.flush() {
		c.sum.Retrieved++
		c.sess.Retrieved(c.ctx, n)
	}
}

func (c *conn) cmdTOP(rest string) {
	args := splitArgs(rest)
	if len(args) != 2 {
		if len(args) < 2 {
			c.fail("", "usage: TOP message lines")
		} else {
			c.fail("", "too many arguments")
		}
		c.badCommand()
		return
	}
	n, ok := c.msgArg(args[0])
	if !ok {
		return
	}
	lines, ok := parseLineCount(args[1])
	if !ok {
		c.fail("", "invalid line count")
		c.badCommand()
		return
	}
	c.flush()
	rc, err := c.sess.Top(c.ctx, n, lines)
	if err != nil {
		c.backendFailed("TOP", n, err)
		return
	}
	c.sendBody("TOP", n, "top of message follows", rc)
}

func (c *conn) cmdDELE(rest string) {
	n, ok := c.oneMsgArg(rest)
	if !ok {
		return
	}
	c.drop.dele(n)
	c.ok("message " + strconv.Itoa(n) + " deleted")
}

func (c *conn) cmdRSET(rest string) {
	if !c.noArgs(rest) {
		return
	}
	c.drop.reset()
	c.ok(maildropText(c.drop.stat()))
}

func (c *conn) cmdNOOP(rest string) {
	if !c.noArgs(rest) {
		return
	}
	c.ok("")
}
