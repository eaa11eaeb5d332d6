package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/uidmap"
)

func TestReadinessUpstreamCached(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	up := ln.Addr().String()
	var dials atomic.Int32
	var draining atomic.Bool
	r := &Readiness{
		Store:    uidmap.NewMemoryStore(),
		Draining: draining.Load,
		Upstream: func() string { return up },
		TTL:      time.Hour,
		dialFunc: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	for range 3 {
		if err := r.Check(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d dials for 3 checks within the TTL, want 1", n)
	}
	// Another address is checked at once; a refused dial is not ready.
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	up = ln2.Addr().String()
	ln2.Close()
	if err := r.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "upstream") {
		t.Fatalf("upstream down: %v", err)
	}
	draining.Store(true)
	if err := r.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "shutting down") {
		t.Fatalf("draining: %v", err)
	}
}

func TestHandler(t *testing.T) {
	m := New("test-version")
	m.Listener("127.0.0.1:110", pop3.TLSNone)
	o := m.POP3()
	ci := &pop3.ConnInfo{Listener: "127.0.0.1:110"}
	o.ConnOpened(ci, pop3.TLSNone)
	o.Command("RETR", true)
	o.BytesSent(123)
	m.Upstream().CommandDone("fetch", 5*time.Millisecond, fmt.Errorf("x: %w", imapupstream.ErrUnavailable))
	m.Upstream().CommandDone("fetch", 5*time.Millisecond, fmt.Errorf("x: %w", context.Canceled)) // not the upstream's fault
	m.Upstream().LoginDone(time.Millisecond, fmt.Errorf("x: %w", imapupstream.ErrAuthFailed))
	m.Proxy().Resolved(&uidmap.View{Assigned: 4, Kept: 2})
	store := &brokenStore{Store: uidmap.NewMemoryStore()}
	srv := httptest.NewServer(Handler(m, &Readiness{Store: store}))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/metrics")
	for _, want := range []string{
		`popbridge_sessions_active{listener="127.0.0.1:110"} 1`,
		`popbridge_sessions_total{listener="127.0.0.1:110",tls="none"} 1`,
		`popbridge_commands_total{command="RETR",result="ok"} 1`,
		`popbridge_sent_bytes_total 123`,
		`popbridge_upstream_errors_total{kind="unavailable"} 1`,
		`popbridge_upstream_errors_total{kind="other"} 0`,
		`popbridge_upstream_connect_duration_seconds_count{result="auth"} 1`,
		`popbridge_uidls_assigned_total 4`,
		`popbridge_uidls_reidentified_total 2`,
		`popbridge_build_info{version="test-version"} 1`,
		`popbridge_connections_refused_total{reason="shutting_down"} 0`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics (%d) lacks %q", code, want)
		}
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz %d", code)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz %d", code)
	}
	store.broken.Store(true)
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "state store") {
		t.Errorf("/readyz with a broken store: %d %q", code, body)
	}
}

type brokenStore struct {
	uidmap.Store
	broken atomic.Bool
}

func (s *brokenStore) Load(ctx context.Context, key uidmap.Key) (*uidmap.Maildrop, error) {
	if s.broken.Load() {
		return nil, errors.New("broken")
	}
	return s.Store.Load(ctx, key)
}

func TestUpstreamErrorKind(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("%w: connect: %w", imapupstream.ErrUnavailable, context.DeadlineExceeded), KindTimeout},
		{fmt.Errorf("%w: x", imapupstream.ErrUnavailable), KindUnavailable},
		{fmt.Errorf("%w: x", imapupstream.ErrInUse), KindInUse},
		{fmt.Errorf("%w: x", imapupstream.ErrNoSuchMessage), KindNoSuchMessage},
		{fmt.Errorf("%w: x", imapupstream.ErrMailboxChanged), KindMailboxChanged},
		{fmt.Errorf("%w: x", imapupstream.ErrNoMailbox), KindNoMailbox},
		{fmt.Errorf("%w: x", imapupstream.ErrConfig), KindConfig},
		{fmt.Errorf("%w: x", imapupstream.ErrAuthFailed), ""},
		{errors.New("NO something"), KindOther},
	} {
		if got := UpstreamErrorKind(c.err); got != c.want {
			t.Errorf("%v: %q, want %q", c.err, got, c.want)
		}
	}
}
