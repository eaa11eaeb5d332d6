package pop3

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// commandName returns the canonical upper-case name of a known command
// keyword (matched case-insensitively), or "" for anything else. Returning
// constants keeps the hot path free of allocations, and lets logs name the
// command without echoing what the client typed.
func commandName(kw []byte) string {
	for _, name := range [...]string{
		"USER", "PASS", "QUIT", "STAT", "LIST", "RETR", "DELE", "NOOP",
		"RSET", "TOP", "UIDL", "CAPA", "APOP", "AUTH", "STLS",
	} {
		if len(kw) == len(name) && bytes.EqualFold(kw, []byte(name)) {
			return name
		}
	}
	return ""
}

// splitCommand splits a command line into its keyword and the rest of the
// line after the first space (RFC 1939 section 3: keyword and arguments
// are separated by a single space). The rest is kept verbatim because PASS
// takes it whole: passwords may contain spaces.
func splitCommand(line []byte) (keyword []byte, rest string) {
	i := bytes.IndexByte(line, ' ')
	if i < 0 {
		return line, ""
	}
	return line[:i], string(line[i+1:])
}

// splitArgs splits the arguments of the commands that take numbers. Runs of
// spaces count as one, for lenient clients.
func splitArgs(rest string) []string {
	return strings.Fields(rest)
}

// parseNumber parses a non-negative decimal number made of ASCII digits
// only: no sign, no spaces, no prefix, no overflow. Leading zeros are
// allowed (they are still decimal).
func parseNumber(s string) (int, bool) { return parseDigits(s, false) }

// parseLineCount parses the line count of TOP. Clients use huge values to
// mean "the whole message" (fetchmail sends 99999999), so a value too large
// for an int is clamped to math.MaxInt instead of refused.
func parseLineCount(s string) (int, bool) { return parseDigits(s, true) }

func parseDigits(s string, clamp bool) (int, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch < '0' || ch > '9' {
			return 0, false
		}
		d := int(ch - '0')
		switch {
		case n <= (math.MaxInt-d)/10:
			n = n*10 + d
		case clamp:
			n = math.MaxInt
		default:
			return 0, false
		}
	}
	return n, true
}

// handle runs one command line.
func (c *conn) handle(line []byte) {
	kw, rest := splitCommand(line)
	name := commandName(kw)
	start := time.Now()
	c.cmdOK = false
	c.dispatch(name, rest)
	logName := name
	if logName == "" {
		logName = "unknown"
	}
	c.log.Debug("command", zap.String("cmd", logName), zap.Bool("ok", c.cmdOK),
		zap.Duration("took", time.Since(start)))
	if o := c.cfg.observer; o != nil {
		o.Command(logName, c.cmdOK)
	}
}

func (c *conn) dispatch(name, rest string) {
	if name == "" {
		c.fail("", "unknown command")
		c.badCommand()
		return
	}
	// Valid in every state.
	switch name {
	case "CAPA":
		c.cmdCAPA(rest)
		return
	case "QUIT":
		c.cmdQUIT(rest)
		return
	}
	if c.state == stateAuthorization {
		switch name {
		case "USER":
			c.cmdUSER(rest)
		case "PASS":
			c.cmdPASS(rest)
		case "APOP":
			// Not counted as bad: clients try it first and fall back.
			c.fail("", "APOP not supported")
		case "AUTH":
			c.cmdAUTH(rest)
		case "STLS":
			c.cmdSTLS(rest)
		default:
			c.fail("", name+" not valid before login")
			c.badCommand()
		}
		return
	}
	switch name {
	case "STAT":
		c.cmdSTAT(rest)
	case "LIST":
		c.cmdLIST(rest)
	case "UIDL":
		c.cmdUIDL(rest)
	case "RETR":
		c.cmdRETR(rest)
	case "TOP":
		c.cmdTOP(rest)
	case "DELE":
		c.cmdDELE(rest)
	case "RSET":
		c.cmdRSET(rest)
	case "NOOP":
		c.cmdNOOP(rest)
	default:
		c.fail("", name+" not valid after login")
		c.badCommand()
	}
}

// noArgs answers -ERR when a command that takes no argument got one.
func (c *conn) noArgs(rest string) bool {
	if len(splitArgs(rest)) != 0 {
		c.fail("", "too many arguments")
		c.badCommand()
		return false
	}
	return true
}

// msgArg checks a message-number argument: the number of a message not
// marked deleted. It answers -ERR itself when the number is not usable.
func (c *conn) msgArg(arg string) (int, bool) {
	n, ok := parseNumber(arg)
	switch {
	case !ok || n == 0:
		c.fail("", "invalid message number")
	case !c.drop.exists(n):
		c.fail("", "no such message")
	case c.drop.isDeleted(n):
		c.fail("", "message "+strconv.Itoa(n)+" already deleted")
	default:
		return n, true
	}
	c.badCommand()
	return 0, false
}

// oneMsgArg parses the arguments of a command that takes exactly one
// message number.
func (c *conn) oneMsgArg(rest string) (int, bool) {
	args := splitArgs(rest)
	switch len(args) {
	case 0:
		c.fail("", "missing message number")
	case 1:
		return c.msgArg(args[0])
	default:
		c.fail("", "too many arguments")
	}
	c.badCommand()
	return 0, false
}
