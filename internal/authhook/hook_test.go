package authhook

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"plain":            "plain",
		"two words":        "two%20words",
		"100%":             "100%25",
		"\x00\r\n\x7f":     "%00%0D%0A%7F",
		"pässwörd":         "p%C3%A4ssw%C3%B6rd",
		"user@example.org": "user@example.org",
		" lead":            "%20lead",
	} {
		if got := escape(in); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
}

// serve starts a service answering with headers from fn.
func serve(t *testing.T, fn func(r *http.Request) http.Header) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range fn(r) {
			w.Header()[k] = v
		}
		w.WriteHeader(http.StatusNoContent) // nginx ignores the status: so do we
	}))
	t.Cleanup(srv.Close)
	c, err := New(Config{URL: srv.URL + "/auth", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

func TestAnswers(t *testing.T) {
	ctx := context.Background()
	req := Request{Method: "plain", User: "u", Pass: "p"}
	tests := []struct {
		name    string
		h       http.Header
		want    Answer
		refusal *Refusal
		unavail bool
	}{
		{"ok", hdr("Auth-Status", "OK"), Answer{User: "u", Pass: "p"}, nil, false},
		{"ok routed", hdr("Auth-Status", "OK", "Auth-Server", "192.0.2.1", "Auth-Port", "143"), Answer{User: "u", Pass: "p", Server: "192.0.2.1:143"}, nil, false},
		{"ok ipv6", hdr("Auth-Status", "OK", "Auth-Server", "2001:db8::1", "Auth-Port", "993"), Answer{User: "u", Pass: "p", Server: "[2001:db8::1]:993"}, nil, false},
		{"rewritten", hdr("Auth-Status", "OK", "Auth-User", "real", "Auth-Pass", "upstream pw"), Answer{User: "real", Pass: "upstream pw"}, nil, false},
		{"refused", hdr("Auth-Status", "Invalid login or password", "Auth-Wait", "3"), Answer{}, &Refusal{Text: "Invalid login or password", Wait: 3 * time.Second}, false},
		{"refused closes", hdr("Auth-Status", "Go away"), Answer{}, &Refusal{Text: "Go away"}, false},
		{"a wait is bounded", hdr("Auth-Status", "Slow down", "Auth-Wait", "86400"), Answer{}, &Refusal{Text: "Slow down", Wait: MaxWait}, false},
		{"a bad wait is none", hdr("Auth-Status", "No", "Auth-Wait", "soon"), Answer{}, &Refusal{Text: "No"}, false},
		{"no status", hdr("Auth-Server", "192.0.2.1"), Answer{}, nil, true},
		{"server without port", hdr("Auth-Status", "OK", "Auth-Server", "192.0.2.1"), Answer{}, nil, true},
		{"bad port", hdr("Auth-Status", "OK", "Auth-Server", "192.0.2.1", "Auth-Port", "99999"), Answer{}, nil, true},
		{"empty user", hdr("Auth-Status", "OK", "Auth-User", ""), Answer{}, nil, true},
		{"ok is case-sensitive, as nginx's", hdr("Auth-Status", "ok"), Answer{}, &Refusal{Text: "ok"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := serve(t, func(*http.Request) http.Header { return tt.h })
			got, err := c.Ask(ctx, req)
			var r *Refusal
			switch {
			case tt.unavail:
				if !errors.Is(err, ErrUnavailable) {
					t.Fatalf("got %+v %v, want ErrUnavailable", got, err)
				}
			case tt.refusal != nil:
				if !errors.As(err, &r) || *r != *tt.refusal {
					t.Fatalf("got %v, want refusal %+v", err, tt.refusal)
				}
			default:
				if err != nil || got != tt.want {
					t.Fatalf("got %+v %v, want %+v", got, err, tt.want)
				}
			}
		})
	}
}

func TestWaitIsBounded(t *testing.T) {
	var n atomic.Int32
	c := serve(t, func(*http.Request) http.Header {
		n.Add(1)
		return hdr("Auth-Status", "WAIT", "Auth-Wait", "0")
	})
	if _, err := c.Ask(context.Background(), Request{User: "u"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("endless WAIT: %v", err)
	}
	if got := n.Load(); got != maxWaits+1 {
		t.Fatalf("%d requests, want %d", got, maxWaits+1)
	}
}

func TestSlowServiceTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	c, err := New(Config{URL: srv.URL, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := c.Ask(context.Background(), Request{User: "u"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("slow service: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Ask took %v with a 200ms timeout", took)
	}
}

// TestNoRedirect: a redirect would carry the password elsewhere.
func TestNoRedirect(t *testing.T) {
	var elsewhere atomic.Bool
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Store(true)
		w.Header().Set("Auth-Status", "OK")
	}))
	t.Cleanup(other.Close)
	srv := httptest.NewServer(http.RedirectHandler(other.URL, http.StatusFound))
	t.Cleanup(srv.Close)
	c, err := New(Config{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Ask(context.Background(), Request{User: "u", Pass: "p"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("redirect: %v", err)
	}
	if elsewhere.Load() {
		t.Fatal("the redirect was followed")
	}
}

func TestConfig(t *testing.T) {
	for _, cfg := range []Config{
		{URL: "ftp://x/"},
		{URL: "http:///nohost"},
		{URL: "http://x/", Timeout: -1},
		{URL: "http://x/", Headers: map[string]string{"Auth-User": "x"}},
		{URL: "http://x/", Headers: map[string]string{"client-ip": "x"}},
		{URL: "https://x/", CAFile: "/nonexistent.pem"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	if c, err := New(Config{URL: "http://x/"}); err != nil || c.cfg.Timeout != DefaultTimeout {
		t.Fatalf("defaults: %v", err)
	}
	if !strings.Contains((&Refusal{Text: "no"}).Error(), "no") {
		t.Fatal("Refusal.Error")
	}
}
