package imapupstream

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
)

// The pre-login phase speaks the part of the IMAP conversation that go-imap
// v2 cannot: the ID command (RFC 2971) with Dovecot's x-originating-ip and
// friends, which imap.IDData has no room for. It runs on the bare
// connection (after implicit TLS) before imapclient takes it:
//
//   - it reads the greeting itself;
//   - with TLSStartTLS it runs STARTTLS and the TLS handshake, then asks
//     CAPABILITY over TLS (RFC 3501 section 6.2.1: what the server said
//     before TLS is forgotten), which go-imap would have asked anyway;
//   - when the greeting advertised ID and the client's address is known, it
//     sends ID: pipelined with that CAPABILITY after STARTTLS (no extra
//     round trip), or as one round trip of its own otherwise;
//   - it hands imapclient a connection that first replays a greeting: the
//     server's own (its capabilities are still true: ID changes none), or
//     after STARTTLS one carrying the capabilities the server gave over TLS,
//     so that imapclient needs no CAPABILITY round trip of its own.
//
// A greeting without a capability list gets no ID: finding out whether the
// server knows ID would cost a round trip of its own.

// preTagPrefix tags the pre-login commands; imapclient's tags start with T.
const preTagPrefix = "P"

// maxPreResponse bounds one response read in the pre-login phase, literals
// included: a server that sends more is broken or hostile.
const maxPreResponse = 64 << 10

// preLogin runs the pre-login phase on conn (the connection under go-imap,
// TLS included for TLSImplicit; raw for TLSStartTLS) and returns the
// connection to give imapclient. step wraps an error with what failed.
func (d *Dialer) preLogin(ctx context.Context, conn net.Conn, cred Credentials, step func(string, error) error) (net.Conn, error) {
	p := &preConn{conn: conn, br: bufio.NewReader(conn), trace: d.trace}
	greeting, err := p.readResponse(false) // replayed, and traced, by imapclient
	if err != nil {
		return nil, step("greeting", err)
	}
	status, caps := parseGreeting(greeting)
	idArgs := idArguments(cred)
	sendID := idArgs != "" && status == "OK" && hasCap(caps, "ID")

	if d.cfg.TLS != TLSStartTLS {
		if sendID {
			if _, err := p.command("ID "+idArgs, nil); err != nil {
				return nil, step("ID", err)
			}
		}
		return p.handover(conn, []byte(greeting))
	}

	// STARTTLS: nothing but STARTTLS is said in the clear.
	p.traceIn(greeting)
	switch status {
	case "OK":
	case "PREAUTH":
		return nil, errPreauth
	default:
		return nil, step("greeting", fmt.Errorf("server said %q", strings.TrimSpace(greeting)))
	}
	if st, err := p.command("STARTTLS", nil); err != nil {
		return nil, step("STARTTLS", err)
	} else if st != "OK" {
		return nil, step("STARTTLS", fmt.Errorf("server answered %s", st))
	}
	if p.br.Buffered() > 0 {
		// Injected before the handshake (CVE-2011-0411 in reverse): it
		// must not be read as if it came over TLS.
		return nil, step("STARTTLS", errors.New("the server sent data after its STARTTLS answer, before TLS"))
	}
	tlsConn := tls.Client(conn, d.tls.Clone())
	if err := tlsConn.HandshakeContext(ctx); err != nil {
		return nil, step("TLS handshake", err)
	}
	p = &preConn{conn: tlsConn, br: bufio.NewReader(tlsConn), trace: d.trace}
	var tlsCaps []string
	collect := func(resp string) {
		if rest, ok := strings.CutPrefix(resp, "* CAPABILITY "); ok {
			tlsCaps = strings.Fields(strings.TrimSpace(rest))
		}
	}
	cmds := []string{"CAPABILITY"}
	if sendID {
		cmds = append(cmds, "ID "+idArgs)
	}
	sts, err := p.pipeline(cmds, collect)
	if err != nil {
		return nil, step("CAPABILITY", err)
	}
	if sts[0] != "OK" || len(tlsCaps) == 0 {
		return nil, step("CAPABILITY", fmt.Errorf("server answered %s without capabilities", sts[0]))
	}
	replay := "* OK [CAPABILITY " + strings.Join(tlsCaps, " ") + "] ready (greeting replayed after STARTTLS)\r\n"
	return p.handover(tlsConn, []byte(replay))
}

// errPreauth refuses a PREAUTH greeting: the server decided who we are;
// that need not be this user.
var errPreauth = fmt.Errorf("%w: the server greeted with PREAUTH; refusing to use a session it authenticated by other means", ErrUnavailable)

// idArguments is the ID command's parameter list for the client's
// addresses, or "" when none is known.
func idArguments(cred Credentials) string {
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
	add("x-originating-ip", "x-originating-port", cred.ClientAddr)
	add("x-connected-ip", "x-connected-port", cred.ConnectedAddr)
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

// parseGreeting returns the greeting's status (OK, PREAUTH, BYE) and the
// capabilities of its [CAPABILITY …] code, if any.
func parseGreeting(line string) (status string, caps []string) {
	rest, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "* ")
	if !ok {
		return "", nil
	}
	status, rest, _ = strings.Cut(rest, " ")
	status = strings.ToUpper(status)
	if len(rest) > len("[CAPABILITY ") && strings.EqualFold(rest[:len("[CAPABILITY ")], "[CAPABILITY ") {
		if list, _, ok := strings.Cut(rest[len("[CAPABILITY "):], "]"); ok {
			caps = strings.Fields(list)
		}
	}
	return status, caps
}

func hasCap(caps []string, name string) bool {
	for _, c := range caps {
		if strings.EqualFold(c, name) {
			return true
		}
	}
	return false
}

// preConn is the connection during the pre-login phase.
type preConn struct {
	conn  net.Conn
	br    *bufio.Reader
	trace io.Writer // Dialer.trace: both directions
	tag   int
	bye   string // the last untagged BYE, for the error when the server hangs up
}

// command sends one command and waits for its completion, passing every
// untagged response to untagged (if not nil). It returns the completion's
// status (OK, NO, BAD).
func (p *preConn) command(cmd string, untagged func(string)) (string, error) {
	sts, err := p.pipeline([]string{cmd}, untagged)
	if err != nil {
		return "", err
	}
	return sts[0], nil
}

// pipeline sends cmds in one write and waits until each is complete,
// returning their statuses in order.
func (p *preConn) pipeline(cmds []string, untagged func(string)) ([]string, error) {
	var out bytes.Buffer
	tags := make([]string, len(cmds))
	for i, cmd := range cmds {
		p.tag++
		tags[i] = preTagPrefix + strconv.Itoa(p.tag)
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
		resp, err := p.readResponse(true)
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

// readResponse reads one response: a line, and the literals it announces
// with the lines that follow them. traced says whether to copy it to the
// trace.
func (p *preConn) readResponse(traced bool) (string, error) {
	var b strings.Builder
	for {
		line, err := p.br.ReadSlice('\n')
		if b.Len()+len(line) > maxPreResponse {
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
		n, ok := literalSize(line)
		if !ok {
			break
		}
		if b.Len()+n > maxPreResponse {
			return "", errors.New("response too long")
		}
		if _, err := io.CopyN(&b, p.br, int64(n)); err != nil {
			return "", err
		}
	}
	if traced {
		p.traceIn(b.String())
	}
	return b.String(), nil
}

func (p *preConn) traceIn(s string) {
	if p.trace != nil {
		io.WriteString(p.trace, s)
	}
}

// literalSize reports the size of the literal ({n} or {n+}) that ends line.
func literalSize(line []byte) (int, bool) {
	line = bytes.TrimRight(line, "\r\n")
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false
	}
	open := bytes.LastIndexByte(line, '{')
	if open < 0 {
		return 0, false
	}
	digits := bytes.TrimSuffix(line[open+1:len(line)-1], []byte("+"))
	n, err := strconv.Atoi(string(digits))
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// handover returns the connection for imapclient: conn, first replaying
// greeting and whatever the pre-login phase read past its last response.
func (p *preConn) handover(conn net.Conn, greeting []byte) (net.Conn, error) {
	pending := greeting
	if n := p.br.Buffered(); n > 0 {
		rest, _ := p.br.Peek(n)
		pending = append(pending, rest...)
	}
	return &replayConn{Conn: conn, pending: pending}, nil
}

// replayConn returns pending before reading on from its connection.
type replayConn struct {
	net.Conn
	pending []byte
}

func (r *replayConn) Read(b []byte) (int, error) {
	if len(r.pending) > 0 {
		n := copy(b, r.pending)
		r.pending = r.pending[n:]
		return n, nil
	}
	return r.Conn.Read(b)
}
