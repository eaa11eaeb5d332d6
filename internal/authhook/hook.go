package authhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// ErrUnavailable: the service could not be asked, or gave no answer that
// decides the login. The login must fail as a temporary failure.
var ErrUnavailable = errors.New("authhook: authentication service unavailable")

// Config configures a Client.
type Config struct {
	URL string // http:// or https://
	// Timeout bounds one request, and the whole exchange with it
	// (Auth-Status: WAIT included) when the caller's context has no
	// earlier deadline; default 5s.
	Timeout time.Duration
	// CAFile is a PEM bundle added to the system roots for an https URL.
	CAFile string
	// Headers are sent with every request, like nginx's auth_http_header:
	// a shared secret that tells the service the request is ours.
	Headers map[string]string
}

// DefaultTimeout is Config.Timeout's default.
const DefaultTimeout = 5 * time.Second

// maxWaits bounds how often one login follows Auth-Status: WAIT.
const maxWaits = 5

// Request is one login to ask about.
type Request struct {
	// Method is the nginx Auth-Method: "plain" for passwords (USER/PASS,
	// PLAIN, LOGIN), "xoauth2" or "oauthbearer" for bearer tokens, whose
	// token goes in Pass.
	Method  string
	User    string
	Pass    string
	Attempt int    // 1 for the connection's first login attempt
	Client  net.IP // the client's address
	TLS     bool   // the client connection is TLS
}

// Answer is an accepted login.
type Answer struct {
	// User and Pass are the login to make upstream: Request's, or what
	// the service rewrote them to (Auth-User, Auth-Pass).
	User, Pass string
	// Server is "host:port" of the IMAP server the service chose, or ""
	// when it named none.
	Server string
}

// Refusal is a login the service refused; Error is its Auth-Status text.
type Refusal struct {
	Text string
	// Wait is Auth-Wait: how long to delay the answer, after which the
	// client may try again. Zero means the connection is to be closed.
	Wait time.Duration
}

func (r *Refusal) Error() string { return "authhook: refused: " + r.Text }

// Client asks one service. It is safe for concurrent use.
type Client struct {
	cfg  Config
	http *http.Client
}

// New checks cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("authhook: url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("authhook: url %q: want http://host/path or https://host/path", cfg.URL)
	}
	if cfg.Timeout < 0 {
		return nil, errors.New("authhook: negative timeout")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	for k := range cfg.Headers {
		if strings.HasPrefix(strings.ToLower(k), "auth-") || strings.EqualFold(k, "Client-IP") {
			return nil, fmt.Errorf("authhook: header %q would replace one of the protocol's", k)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // a local service; an environment proxy would see passwords
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("authhook: ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("authhook: ca_file %s: no certificates", cfg.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &Client{cfg: cfg, http: &http.Client{
		Transport: tr,
		// A redirect would send the password to wherever it points.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// Ask asks the service about req. It returns the Answer of an accepted
// login, a *Refusal, or an error wrapping ErrUnavailable (or ctx's).
func (c *Client) Ask(ctx context.Context, req Request) (Answer, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout*(maxWaits+1))
	defer cancel()
	for waits := 0; ; waits++ {
		h, err := c.ask(ctx, req)
		if err != nil {
			return Answer{}, err
		}
		status := h.Get("Auth-Status")
		switch {
		case status == "OK":
			return answer(req, h)
		case status == "WAIT":
			wait := waitOf(h)
			if waits == maxWaits {
				return Answer{}, fmt.Errorf("%w: still WAIT after %d tries", ErrUnavailable, maxWaits)
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return Answer{}, fmt.Errorf("%w: %w", ErrUnavailable, context.Cause(ctx))
			case <-t.C:
			}
		case status == "":
			return Answer{}, fmt.Errorf("%w: answer without Auth-Status", ErrUnavailable)
		default:
			return Answer{}, &Refusal{Text: status, Wait: waitOf(h)}
		}
	}
}

// ask makes one request and returns the answer's headers.
func (c *Client) ask(ctx context.Context, req Request) (http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, c.cfg.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	for k, v := range c.cfg.Headers {
		hr.Header[k] = []string{v} // as the operator spelled it
	}
	// nginx's spelling, not Go's canonical one (Client-Ip, Auth-Ssl): a
	// service may compare names case-sensitively.
	set := func(k, v string) { hr.Header[k] = []string{v} }
	set("Auth-Method", req.Method)
	set("Auth-User", escape(req.User))
	set("Auth-Pass", escape(req.Pass))
	set("Auth-Protocol", "pop3")
	set("Auth-Login-Attempt", strconv.Itoa(max(req.Attempt, 1)))
	if req.Client != nil {
		set("Client-IP", req.Client.String())
	}
	if req.TLS {
		set("Auth-SSL", "on")
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		// Not wrapped as it is: url.Error quotes the URL, never headers.
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	return resp.Header, nil
}

// MaxWait bounds Auth-Wait: a client connection is held that long at most.
const MaxWait = time.Minute

// waitOf is the answer's Auth-Wait, whole seconds as nginx reads it, at
// most MaxWait; 0 when there is none.
func waitOf(h http.Header) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(h.Get("Auth-Wait")))
	if err != nil || n <= 0 {
		return 0
	}
	return min(time.Duration(n)*time.Second, MaxWait)
}

// answer reads an OK answer.
func answer(req Request, h http.Header) (Answer, error) {
	a := Answer{User: req.User, Pass: req.Pass}
	if u := h.Values("Auth-User"); len(u) > 0 {
		a.User = u[0]
	}
	if p := h.Values("Auth-Pass"); len(p) > 0 {
		a.Pass = p[0]
	}
	if a.User == "" {
		return Answer{}, fmt.Errorf("%w: OK with an empty Auth-User", ErrUnavailable)
	}
	server, port := h.Get("Auth-Server"), h.Get("Auth-Port")
	switch {
	case server == "" && port == "":
	case server == "" || port == "":
		return Answer{}, fmt.Errorf("%w: Auth-Server and Auth-Port go together", ErrUnavailable)
	default:
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return Answer{}, fmt.Errorf("%w: invalid Auth-Port %q", ErrUnavailable, port)
		}
		if strings.ContainsAny(server, " /[]") {
			return Answer{}, fmt.Errorf("%w: invalid Auth-Server %q", ErrUnavailable, server)
		}
		a.Server = net.JoinHostPort(server, port)
	}
	return a, nil
}

// escape URL-encodes what nginx's auth_http does in Auth-User and
// Auth-Pass: space, '%' and bytes outside printable ASCII, so that a
// header line can carry any password.
func escape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch <= ' ' || ch == '%' || ch >= 0x7f {
			if b.Len() == 0 {
				b.Grow(len(s) + 8)
				b.WriteString(s[:i])
			}
			b.WriteByte('%')
			b.WriteByte(hex[ch>>4])
			b.WriteByte(hex[ch&15])
		} else if b.Len() > 0 {
			b.WriteByte(ch)
		}
	}
	if b.Len() == 0 {
		return s
	}
	return b.String()
}
