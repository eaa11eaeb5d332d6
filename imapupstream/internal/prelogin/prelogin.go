package prelogin

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/popbridge/popbridge/internal/imapwire"
)

// TagPrefix tags the pre-login commands; imapclient's tags start with T.
const TagPrefix = "P"

// maxResponse bounds one response read in the pre-login phase, literals
// included: a server that sends more is broken or hostile.
const maxResponse = 64 << 10

// ErrPreauth refuses a PREAUTH greeting (after STARTTLS is asked for): the
// server decided who we are; that need not be this user.
var ErrPreauth = errors.New("the server greeted with PREAUTH; refusing to use a session it authenticated by other means")

// Options say what Run does.
type Options struct {
	// StartTLS, if not nil, is the TLS configuration for STARTTLS (cloned);
	// nil: no STARTTLS.
	StartTLS *tls.Config
	// ID is the ID command's parameter list (IDArguments), "" for no ID.
	ID string
	// Trace, if not nil, gets the conversation both ways; the greeting
	// only with StartTLS (otherwise imapclient traces its replay).
	Trace io.Writer
	// Ahead, if not nil, says from the greeting's text (after its response
	// code) and capabilities whether the ID goes out with the login instead
	// of in a round trip of its own (only without StartTLS). Then Run does
	// not wait for the ID's answer: the returned connection (aheadConn)
	// sends the ID in front of the first write, and leaves the ID's answer
	// out of what is read.
	Ahead func(text string, caps []string) bool
}

// Result is what Run hands on.
type Result struct {
	// Conn is the connection to give imapclient.
	Conn net.Conn
	// Name is the "name" in the server's ID answer, when Run read it ("" if
	// it did not, or the answer had none).
	Name string
	// IDAhead says that the ID goes out with the first write on Conn
	// (Options.Ahead), its answer unread.
	IDAhead bool
}

// Run runs the pre-login phase on conn. step wraps an error with the step
// that failed ("greeting", "STARTTLS", "TLS handshake", "ID",
// "CAPABILITY"); a PREAUTH greeting with StartTLS is ErrPreauth, unwrapped.
func Run(ctx context.Context, conn net.Conn, o Options, step func(string, error) error) (Result, error) {
	p := NewConn(conn, o.Trace)
	greeting, err := p.ReadResponse(false) // replayed, and traced, by imapclient
	if err != nil {
		return Result{}, step("greeting", err)
	}
	status, text, caps := parseGreeting(greeting)
	sendID := o.ID != "" && status == "OK" && HasCap(caps, "ID")
	var name string
	idName := func(resp string) {
		if n, ok := IDName(resp); ok {
			name = n
		}
	}

	if o.StartTLS == nil {
		if sendID && o.Ahead != nil && o.Ahead(text, caps) {
			return Result{Conn: p.ahead(conn, []byte(greeting), "ID "+o.ID), IDAhead: true}, nil
		}
		if sendID {
			if _, err := p.Command("ID "+o.ID, idName); err != nil {
				return Result{}, step("ID", err)
			}
		}
		return Result{Conn: p.handover(conn, []byte(greeting)), Name: name}, nil
	}

	// STARTTLS: nothing but STARTTLS is said in the clear.
	p.traceIn(greeting)
	switch status {
	case "OK":
	case "PREAUTH":
		return Result{}, ErrPreauth
	default:
		return Result{}, step("greeting", fmt.Errorf("server said %q", strings.TrimSpace(greeting)))
	}
	if st, err := p.Command("STARTTLS", nil); err != nil {
		return Result{}, step("STARTTLS", err)
	} else if st != "OK" {
		return Result{}, step("STARTTLS", fmt.Errorf("server answered %s", st))
	}
	if p.br.Buffered() > 0 {
		// Injected before the handshake (CVE-2011-0411 in reverse): it
		// must not be read as if it came over TLS.
		return Result{}, step("STARTTLS", errors.New("the server sent data after its STARTTLS answer, before TLS"))
	}
	tlsConn := tls.Client(conn, o.StartTLS.Clone())
	if err := tlsConn.HandshakeContext(ctx); err != nil {
		return Result{}, step("TLS handshake", err)
	}
	p = NewConn(tlsConn, o.Trace)
	var tlsCaps []string
	collect := func(resp string) {
		if rest, ok := strings.CutPrefix(resp, "* CAPABILITY "); ok {
			tlsCaps = strings.Fields(strings.TrimSpace(rest))
		}
		idName(resp)
	}
	cmds := []string{"CAPABILITY"}
	if sendID {
		cmds = append(cmds, "ID "+o.ID)
	}
	sts, err := p.pipeline(cmds, collect)
	if err != nil {
		return Result{}, step("CAPABILITY", err)
	}
	if sts[0] != "OK" || len(tlsCaps) == 0 {
		return Result{}, step("CAPABILITY", fmt.Errorf("server answered %s without capabilities", sts[0]))
	}
	replay := "* OK [CAPABILITY " + strings.Join(tlsCaps, " ") + "] ready (greeting replayed after STARTTLS)\r\n"
	return Result{Conn: p.handover(tlsConn, []byte(replay)), Name: name}, nil
}

// IDName returns the value of the "name" field of an ID answer (RFC 2971,
// "* ID (...)"), and whether resp is one with that field. Only quoted
// strings are understood: a server that sends its name as a literal is
// not recognised, which only costs what recognising it would save.
func IDName(resp string) (string, bool) {
	if len(resp) < 6 || !strings.EqualFold(resp[:5], "* ID ") {
		return "", false
	}
	rest := strings.TrimRight(resp[5:], "\r\n")
	rest, ok := strings.CutPrefix(rest, "(")
	if !ok {
		return "", false // NIL
	}
	var fields []string
	for {
		rest = strings.TrimLeft(rest, " ")
		if rest == "" || rest[0] == ')' {
			break
		}
		if len(rest) >= 3 && strings.EqualFold(rest[:3], "NIL") {
			fields = append(fields, "")
			rest = rest[3:]
			continue
		}
		if rest[0] != '"' {
			return "", false // a literal, or not an ID answer
		}
		var b strings.Builder
		i := 1
		for ; i < len(rest) && rest[i] != '"'; i++ {
			if rest[i] == '\\' && i+1 < len(rest) {
				i++
			}
			b.WriteByte(rest[i])
		}
		if i >= len(rest) {
			return "", false
		}
		fields = append(fields, b.String())
		rest = rest[i+1:]
	}
	for i := 0; i+1 < len(fields); i += 2 {
		if strings.EqualFold(fields[i], "name") {
			return fields[i+1], true
		}
	}
	return "", false
}

// IDArguments is the ID command's parameter list for the client's
// addresses (x-originating-ip/-port for client, x-connected-ip/-port for
// connected; either may be nil), or "" when none is known.
func IDArguments(client, connected net.Addr) string {
	var fields []string
	add := func(ipKey, portKey string, addr net.Addr) {
		ip, port := addrParts(addr)
		if ip == "" {
			return
		}
		fields = append(fields, strconv.Quote(ipKey), strconv.Quote(ip))
		if port > 0 {
			fields = append(fields, strconv.Quote(portKey), strconv.Quote(strconv.Itoa(port)))
		}
	}
	add("x-originating-ip", "x-originating-port", client)
	add("x-connected-ip", "x-connected-port", connected)
	if fields == nil {
		return ""
	}
	return "(" + strings.Join(fields, " ") + ")"
}

// addrParts returns addr's IP address and port ("" and 0 for an address
// without an IP, such as a Unix socket).
func addrParts(addr net.Addr) (ip string, port int) {
	switch a := addr.(type) {
	case nil:
		return "", 0
	case *net.TCPAddr:
		if a.IP == nil {
			return "", 0
		}
		return a.IP.String(), a.Port
	}
	host, portStr, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "", 0
	}
	parsed := net.ParseIP(host)
	if parsed == nil {
		return "", 0
	}
	port, _ = strconv.Atoi(portStr)
	return parsed.String(), port
}

// parseGreeting returns the greeting's status (OK, PREAUTH, BYE), its
// text after the response code, and the capabilities of its
// [CAPABILITY …] code, if any.
func parseGreeting(line string) (status, text string, caps []string) {
	rest, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "* ")
	if !ok {
		return "", "", nil
	}
	status, rest, _ = strings.Cut(rest, " ")
	status = strings.ToUpper(status)
	if len(rest) > len("[CAPABILITY ") && strings.EqualFold(rest[:len("[CAPABILITY ")], "[CAPABILITY ") {
		if list, after, ok := strings.Cut(rest[len("[CAPABILITY "):], "]"); ok {
			caps = strings.Fields(list)
			rest = after
		}
	} else if strings.HasPrefix(rest, "[") {
		if _, after, ok := strings.Cut(rest, "]"); ok {
			rest = after
		}
	}
	return status, strings.TrimSpace(rest), caps
}

// HasCap reports whether caps (as the greeting listed them) has name, in
// any case.
func HasCap(caps []string, name string) bool {
	for _, c := range caps {
		if strings.EqualFold(c, name) {
			return true
		}
	}
	return false
}

// Conn is the connection during the pre-login phase.
type Conn struct {
	conn  net.Conn
	br    *bufio.Reader
	trace io.Writer // both directions
	tag   int
	bye   string // the last untagged BYE, for the error when the server hangs up
}

// readSize is the pre-login reader's buffer: greetings and ID answers are
// a line of a hundred octets or so, and a longer response is read in
// pieces all the same.
const readSize = 1024

// NewConn starts the pre-login phase on conn; trace (if not nil) gets what
// is said both ways.
func NewConn(conn net.Conn, trace io.Writer) *Conn {
	return &Conn{conn: conn, br: bufio.NewReaderSize(conn, readSize), trace: trace}
}

// Command sends one command and waits for its completion, passing every
// untagged response to untagged (if not nil). It returns the completion's
// status (OK, NO, BAD).
func (p *Conn) Command(cmd string, untagged func(string)) (string, error) {
	sts, err := p.pipeline([]string{cmd}, untagged)
	if err != nil {
		return "", err
	}
	return sts[0], nil
}

// pipeline sends cmds in one write and waits until each is complete,
// returning their statuses in order.
func (p *Conn) pipeline(cmds []string, untagged func(string)) ([]string, error) {
	var out bytes.Buffer
	tags := make([]string, len(cmds))
	for i, cmd := range cmds {
		p.tag++
		tags[i] = TagPrefix + strconv.Itoa(p.tag)
		out.WriteString(tags[i] + " " + cmd + "\r\n")
	}
	if p.trace != nil {
		p.trace.Write(out.Bytes())
	}
	if _, err := p.conn.Write(out.Bytes()); err != nil {
		return nil, err
	}
	sts := make([]string, len(cmds))
	for done := 0; done < len(cmds); {
		resp, err := p.ReadResponse(true)
		if err != nil {
			if p.bye != "" {
				err = fmt.Errorf("%w (server said %q)", err, p.bye)
			}
			return nil, err
		}
		tag, rest, _ := strings.Cut(resp, " ")
		if tag == "*" {
			if len(rest) >= 4 && strings.EqualFold(rest[:4], "BYE ") {
				p.bye = strings.TrimSpace(resp)
			}
			if untagged != nil {
				untagged(resp)
			}
			continue
		}
		for i, t := range tags {
			if t == tag && sts[i] == "" {
				st, _, _ := strings.Cut(rest, " ")
				sts[i] = strings.ToUpper(strings.TrimSpace(st))
				done++
			}
		}
	}
	return sts, nil
}

// ReadResponse reads one response: a line, and the literals it announces
// with the lines that follow them. traced says whether to copy it to the
// trace.
func (p *Conn) ReadResponse(traced bool) (string, error) {
	var b strings.Builder
	for {
		line, err := p.br.ReadSlice('\n')
		if b.Len()+len(line) > maxResponse {
			return "", errors.New("response too long")
		}
		b.Write(line)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		n, ok := imapwire.LiteralSize(line)
		if !ok {
			break
		}
		if n > maxResponse-int64(b.Len()) {
			return "", errors.New("response too long")
		}
		if _, err := io.CopyN(&b, p.br, n); err != nil {
			return "", err
		}
	}
	if traced {
		p.traceIn(b.String())
	}
	return b.String(), nil
}

func (p *Conn) traceIn(s string) {
	if p.trace != nil {
		io.WriteString(p.trace, s)
	}
}

// handover returns the connection for imapclient: conn, first replaying
// greeting and whatever the pre-login phase read past its last response.
func (p *Conn) handover(conn net.Conn, greeting []byte) net.Conn {
	return &replayConn{Conn: conn, pending: p.takeBuffered(greeting)}
}

// takeBuffered appends to b what the reader holds past the last response
// it returned, and empties it.
func (p *Conn) takeBuffered(b []byte) []byte {
	if n := p.br.Buffered(); n > 0 {
		rest, _ := p.br.Peek(n)
		b = append(b, rest...)
		p.br.Discard(n)
	}
	return b
}

// replayConn returns pending before reading on from its connection.
type replayConn struct {
	net.Conn
	pending []byte
}

func (r *replayConn) Read(b []byte) (int, error) {
	if len(r.pending) > 0 {
		n := copy(b, r.pending)
		if r.pending = r.pending[n:]; len(r.pending) == 0 {
			r.pending = nil // an idle session keeps no buffer
		}
		return n, nil
	}
	return r.Conn.Read(b)
}
