package faultrelay

import (
	"bytes"
	"strings"

	"github.com/popbridge/popbridge/internal/imapwire"
)

// maxLine is the longest line that is held back, matched or rewritten;
// longer lines are forwarded as they come.
const maxLine = 64 << 10

// scanner follows one direction of an IMAP stream: lines, and the literals
// announced at their ends, which are passed through untouched.
type scanner struct {
	lit  int64  // literal octets still to pass through
	cont bool   // the current line continues a command or response after a literal
	cur  []byte // the current line so far (with its LF once complete)
	sent int    // octets of cur already forwarded
	over bool   // the line is longer than maxLine: forwarded as it comes
	tail []byte // the last octets of an over-long line, for its literal marker
}

// endLine ends the current line, which announces a literal of litSize
// octets (0 for none).
func (s *scanner) endLine(litSize int64) {
	s.lit = litSize
	s.cont = litSize > 0
	s.cur, s.sent, s.over, s.tail = s.cur[:0], 0, false, s.tail[:0]
}

// lastN returns a copy of the last n octets of b.
func lastN(b []byte, n int) []byte {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return bytes.Clone(b)
}

// scan turns what was read in direction d into events for the writer:
// literal octets as they are, complete lines possibly rewritten or followed
// by a cut, incomplete lines held back while a line-level fault is armed for
// d (so that they can be matched whole) or forwarded at once.
func (c *conn) scan(d Dir, s *scanner, p []byte) []event {
	var evs []event
	emit := func(b []byte) {
		if len(b) > 0 {
			evs = append(evs, event{data: bytes.Clone(b)})
		}
	}
	hold := c.r.lineFaults[d.index()].Load()
	for len(p) > 0 {
		if c.raw.Load() {
			if !s.over {
				emit(s.cur[s.sent:])
			}
			s.endLine(0)
			emit(p)
			break
		}
		if s.lit > 0 {
			k := int(min(s.lit, int64(len(p))))
			emit(p[:k])
			s.lit -= int64(k)
			p = p[k:]
			continue
		}
		frag := p
		nl := bytes.IndexByte(p, '\n')
		if nl >= 0 {
			frag = p[:nl+1]
		}
		p = p[len(frag):]
		complete := nl >= 0

		if s.over || len(s.cur)+len(frag) > maxLine {
			if !s.over {
				emit(s.cur[s.sent:])
				s.tail = lastN(s.cur, imapwire.MarkerTail)
				s.over = true
			}
			emit(frag)
			s.tail = lastN(append(s.tail, frag...), imapwire.MarkerTail)
			if complete {
				s.endLine(announced(s.tail))
			}
			continue
		}
		s.cur = append(s.cur, frag...)
		if !complete {
			if s.sent > 0 || !hold {
				emit(s.cur[s.sent:])
				s.sent = len(s.cur)
			}
			continue
		}
		line := s.cur
		if d == ClientToServer && !s.cont {
			c.noteCommand(line)
		}
		if s.sent == 0 && !s.cont {
			out, cut := c.onLine(d, line)
			emit(out)
			if cut {
				if len(out) > 0 {
					// Forwarded, then cut, by the writer: it mutes the
					// way back before the write, so that the server's
					// answer never reaches the client.
					evs[len(evs)-1].cut = true
					return evs
				}
				return append(evs, event{cut: true})
			}
		} else {
			emit(line[s.sent:])
		}
		s.endLine(announced(line))
	}
	return evs
}

// onLine applies the line-level faults to a complete line that starts a
// command or response: it returns what to forward, and whether to cut the
// connection after it.
func (c *conn) onLine(d Dir, line []byte) (out []byte, cut bool) {
	r := c.r
	if d == ClientToServer {
		if !r.lineFaults[0].Load() {
			return line, false
		}
		r.mu.Lock()
		faults := append([]*Fault(nil), r.cmdFaults...)
		r.mu.Unlock()
		for _, f := range faults {
			if matchCommand(line, f.cmd, f.contains) && f.fire() {
				if f.hook != nil {
					f.hook()
					return line, false
				}
				if f.forward {
					return line, true
				}
				return nil, true
			}
		}
		return line, false
	}
	if !r.lineFaults[1].Load() {
		return line, false
	}
	r.mu.Lock()
	hide := r.hideCaps // replaced, never changed in place
	r.mu.Unlock()
	return filterCaps(line, hide), false
}

// splitCommand returns the command words of a client line after its tag
// ("UID EXPUNGE 1:3" for "a7 UID EXPUNGE 1:3\r\n"), or "".
func splitCommand(line []byte) string {
	s := strings.TrimRight(string(line), "\r\n")
	_, rest, ok := strings.Cut(s, " ")
	if !ok {
		return ""
	}
	return rest
}

// noteCommand records a client command line and notices STARTTLS.
func (c *conn) noteCommand(line []byte) {
	rest := splitCommand(line)
	if rest == "" {
		return
	}
	name, _, _ := strings.Cut(rest, " ")
	switch asciiUpper(name) {
	case "LOGIN", "AUTHENTICATE":
		rest = asciiUpper(name)
	case "STARTTLS":
		// What follows the server's answer is TLS: relay raw bytes.
		c.raw.Store(true)
	}
	if len(rest) > 200 {
		rest = rest[:200]
	}
	r := c.r
	r.mu.Lock()
	if len(r.commands) < maxCommands {
		r.commands = append(r.commands, rest)
	}
	r.mu.Unlock()
}

// matchCommand reports whether a client line is the command cmd (upper case,
// words separated by one space) and contains contains (upper case).
func matchCommand(line []byte, cmd, contains string) bool {
	rest := asciiUpper(splitCommand(line))
	if rest == "" {
		return false
	}
	words := strings.Join(strings.Fields(rest), " ")
	if !strings.HasPrefix(words, cmd) || (len(words) > len(cmd) && words[len(cmd)] != ' ') {
		return false
	}
	return contains == "" || strings.Contains(rest, contains)
}

// filterCaps removes the hidden capabilities from a "* CAPABILITY" response
// and from "[CAPABILITY …]" response codes in a server line.
func filterCaps(line []byte, hide map[string]bool) []byte {
	if len(hide) == 0 {
		return line
	}
	s := string(line)
	upper := asciiUpper(s) // same length as s: its indexes are s's
	var b strings.Builder
	pos := 0
	filter := func(from, to int) {
		b.WriteString(s[pos:from])
		var kept []string
		for _, name := range strings.Split(s[from:to], " ") {
			if !hide[asciiUpper(name)] {
				kept = append(kept, name)
			}
		}
		b.WriteString(strings.Join(kept, " "))
		pos = to
	}
	const prefix = "* CAPABILITY "
	if strings.HasPrefix(upper, prefix) {
		end := len(strings.TrimRight(s, "\r\n"))
		filter(len(prefix), end)
	} else {
		for {
			i := strings.Index(upper[pos:], "[CAPABILITY ")
			if i < 0 {
				break
			}
			from := pos + i + len("[CAPABILITY ")
			j := strings.IndexByte(s[from:], ']')
			if j < 0 {
				break
			}
			filter(from, from+j)
		}
	}
	if pos == 0 {
		return line
	}
	b.WriteString(s[pos:])
	return []byte(b.String())
}

// asciiUpper upper-cases ASCII letters only, so that the result has the
// same length as s (strings.ToUpper may not, on 8-bit text).
func asciiUpper(s string) string {
	b := []byte(s)
	for i, ch := range b {
		if 'a' <= ch && ch <= 'z' {
			b[i] = ch - ('a' - 'A')
		}
	}
	return string(b)
}

// announced is the size of the literal that line announces at its end, or 0.
func announced(line []byte) int64 {
	n, _ := imapwire.LiteralSize(line)
	return n
}
