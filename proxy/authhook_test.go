package proxy_test

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/internal/authhook"
	"github.com/popbridge/popbridge/internal/testenv"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/internal/testenv/nginxauth"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/uidmap"
)

// withHook makes the bridge ask the service at url first.
func withHook(t testing.TB, url string, timeout time.Duration) bridgeOption {
	t.Helper()
	c, err := authhook.New(authhook.Config{URL: url, Timeout: timeout, Headers: map[string]string{"X-Auth-Key": nginxauth.Key}})
	if err != nil {
		t.Fatal(err)
	}
	return func(o *proxy.Options, _ *imapupstream.Config, _ *pop3.Server) { o.Hook = c }
}

// hookObserver counts the hook's answers by result.
type hookObserver struct {
	leaseObserver
	mu     sync.Mutex
	counts map[string]int
}

func (o *hookObserver) HookAnswered(result string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.counts == nil {
		o.counts = map[string]int{}
	}
	o.counts[result]++
}

func (o *hookObserver) count(result string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[result]
}

// TestAuthHook: popbridge in front of two Dovecots, with an nginx auth_http
// service deciding the logins. The service routes a user to the second
// Dovecot and rewrites the login, refuses with and without Auth-Wait, asks
// to WAIT, answers late, answers garbage, or is not there at all: only its
// OK ever opens a maildrop.
func TestAuthHook(t *testing.T) {
	dv1, dv2 := dovecot.Start(t), dovecot.Start(t)
	_, port2, _ := net.SplitHostPort(dv2.IMAPAddr)
	p2, _ := strconv.Atoi(port2)
	base := dovecot.User(t)
	alias, mailbox := "alias-"+base+"@example.org", "real-"+base
	devicePass := "device pw 100%"
	local := "local-" + base
	hook := nginxauth.Start(t, map[string]nginxauth.User{
		alias:              {Pass: devicePass, Server: "127.0.0.1", Port: p2, User: mailbox, PassUpstream: dv2.Password},
		local:              {Pass: dv1.Password},
		"disabled-" + base: {Refuse: "Account disabled, call the help desk"},
		"slow-" + base:     {Sleep: 3, Pass: dv1.Password},
		"broken-" + base:   {Garbage: true},
		"waiter-" + base:   {WaitFirst: 1, Pass: dv1.Password},
	})
	obs := &hookObserver{}
	b := startBridge(t, dv1, withHook(t, hook.URL, time.Second),
		func(o *proxy.Options, _ *imapupstream.Config, _ *pop3.Server) { o.Observer = obs })
	// counted checks that one more answer of result was counted.
	counted := func(t *testing.T, result string, before int) {
		t.Helper()
		if got := obs.count(result); got != before+1 {
			t.Errorf("%s answers counted: %d, want %d", result, got, before+1)
		}
	}
	dv1.Append(t, local, "INBOX", message("on dovecot 1", "one\r\n"))
	dv2.Append(t, mailbox, "INBOX", message("on dovecot 2", "two\r\n"))

	t.Run("routes and rewrites", func(t *testing.T) {
		c := b.dial(t)
		if err := c.Login(alias, devicePass); err != nil {
			t.Fatalf("login with the device password: %v", err)
		}
		body, err := c.Retr(1)
		if err != nil || !strings.Contains(string(body), "on dovecot 2") {
			t.Fatalf("RETR %q %v: want the rewritten user's message on the server the hook chose", body, err)
		}
		if err := c.Quit(); err != nil {
			t.Fatal(err)
		}
		// The maildrop is the rewritten user's on the hook's server.
		md, err := b.Store.Load(context.Background(), uidmap.Key{Upstream: "127.0.0.1:" + port2, User: mailbox, Mailbox: "INBOX"})
		if err != nil || len(md.Records) != 1 {
			t.Fatalf("no state for %s on the hook's server: %+v %v", mailbox, md, err)
		}
		reqs := hook.Requests(t)
		r := reqs[len(reqs)-1]
		want := map[string]string{
			"Auth-Method": "plain", "Auth-User": alias, "Auth-Pass": "device%20pw%20100%25", "Auth-Protocol": "pop3",
			"Auth-Login-Attempt": "1", "Client-IP": "127.0.0.1", "X-Auth-Key": nginxauth.Key,
		}
		for k, v := range want {
			if r[k] != v {
				t.Errorf("request header %s = %q, want %q (all: %v)", k, r[k], v, r)
			}
		}
		if _, ok := r["Auth-SSL"]; ok {
			t.Errorf("Auth-SSL sent on a plaintext connection")
		}
	})

	t.Run("Auth-Wait delays and keeps the connection", func(t *testing.T) {
		c := b.dial(t)
		start := time.Now()
		err := c.Login(local, "wrong")
		if errCode(err) != "AUTH" || !strings.Contains(err.Error(), "Invalid login or password") {
			t.Fatalf("wrong password: %v", err)
		}
		if took := time.Since(start); took < time.Second {
			t.Fatalf("refusal answered after %v, want the service's Auth-Wait of 1s", took)
		}
		if err := c.Login(local, dv1.Password); err != nil {
			t.Fatalf("second attempt on the same connection: %v", err)
		}
		if n, _, err := c.Stat(); err != nil || n != 1 {
			t.Fatalf("STAT %d %v", n, err)
		}
		reqs := hook.Requests(t)
		if got := reqs[len(reqs)-1]["Auth-Login-Attempt"]; got != "2" {
			t.Fatalf("second attempt sent Auth-Login-Attempt %q", got)
		}
		c.Quit()
	})

	t.Run("refusal without Auth-Wait closes", func(t *testing.T) {
		defer counted(t, proxy.HookRefused, obs.count(proxy.HookRefused))
		c := b.dial(t)
		err := c.Login("disabled-"+base, "whatever")
		if errCode(err) != "AUTH" || !strings.Contains(err.Error(), "Account disabled, call the help desk") {
			t.Fatalf("got %v, want the service's text as -ERR [AUTH]", err)
		}
		if _, err := c.Cmd("NOOP"); err == nil {
			t.Fatal("the connection stayed open after a refusal without Auth-Wait")
		}
	})

	t.Run("WAIT asks again", func(t *testing.T) {
		defer counted(t, proxy.HookOK, obs.count(proxy.HookOK))
		before := len(hook.Requests(t))
		c := b.dial(t)
		if err := c.Login("waiter-"+base, dv1.Password); err != nil {
			t.Fatalf("login after WAIT: %v", err)
		}
		if n := len(hook.Requests(t)) - before; n != 2 {
			t.Fatalf("%d requests, want 2 (WAIT, then OK)", n)
		}
		c.Quit()
	})

	// Everything below must end in [SYS/TEMP] and never reach an upstream.
	sysTemp := func(t *testing.T, b *bridge, user string) {
		t.Helper()
		c := b.dial(t)
		err := c.Login(user, dv1.Password)
		if errCode(err) != "SYS/TEMP" {
			t.Fatalf("got %v, want -ERR [SYS/TEMP]", err)
		}
		md, err := b.Store.Load(context.Background(), uidmap.Key{Upstream: dv1.IMAPAddr, User: user, Mailbox: "INBOX"})
		if err == nil && len(md.Records) > 0 {
			t.Fatalf("a maildrop was opened: %+v", md)
		}
	}
	t.Run("slow service", func(t *testing.T) {
		defer counted(t, proxy.HookUnavailable, obs.count(proxy.HookUnavailable))
		sysTemp(t, b, "slow-"+base)
	})
	t.Run("garbage answer", func(t *testing.T) {
		defer counted(t, proxy.HookUnavailable, obs.count(proxy.HookUnavailable))
		sysTemp(t, b, "broken-"+base)
	})
	t.Run("service down", func(t *testing.T) {
		addr, err := testenv.FreeAddr("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		down := startBridge(t, dv1, withHook(t, "http://"+addr+"/auth", time.Second))
		sysTemp(t, down, local)
	})
}
