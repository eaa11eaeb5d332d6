package proxy_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/internal/faultrelay"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/pop3/pop3client"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/uidmap"
)

// withUpstream points the bridge at addr (a faultrelay) instead of Dovecot
// itself; uidmap keys keep Dovecot's address.
func withUpstream(addr string) bridgeOption {
	return func(_ *proxy.Options, c *imapupstream.Config, _ *pop3.Server) { c.Address = addr }
}

// withTimeouts sets the upstream connect and command timeouts.
func withTimeouts(connect, command time.Duration) bridgeOption {
	return func(_ *proxy.Options, c *imapupstream.Config, _ *pop3.Server) {
		c.ConnectTimeout, c.CommandTimeout = connect, command
	}
}

// startBridgeWith is startBridge with the backend wrapped by wrap (for
// backends that misbehave on purpose).
func startBridgeWith(t testing.TB, up upstream, wrap func(pop3.Backend) pop3.Backend, opts ...bridgeOption) *bridge {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	log := zap.New(core)
	addr, password := endpoint(up)
	ucfg := imapupstream.Config{
		Address:        addr,
		TLS:            imapupstream.TLSMode("none"),
		Mailbox:        "INBOX",
		ConnectTimeout: 5 * time.Second,
		CommandTimeout: 20 * time.Second,
	}
	store := uidmap.NewMemoryStore()
	popts := proxy.Options{UpstreamID: addr, Mailbox: "INBOX", Map: uidmap.New(store, uidmap.Options{}), Policy: defaultPolicy(), Logger: log}
	srv := &pop3.Server{Logger: log, Implementation: "popbridge", FailureDelay: 50 * time.Millisecond}
	for _, o := range opts {
		o(&popts, &ucfg, srv)
	}
	dialer, err := imapupstream.NewDialer(ucfg, log)
	if err != nil {
		t.Fatal(err)
	}
	popts.Dialer = dialer
	backend, err := proxy.New(popts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Backend = wrap(backend)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	dv, _ := up.(*dovecot.Server)
	return &bridge{Addr: l.Addr().String(), Up: up, DV: dv, Password: password, Store: popts.Map.Store(), Logs: logs, srv: srv}
}

// relayedBridge is a Dovecot, a fault relay in front of it and popbridge
// talking to the relay.
func relayedBridge(t *testing.T, dvOpts []dovecot.Option, opts ...bridgeOption) (*bridge, *faultrelay.Relay) {
	t.Helper()
	dv := dovecot.Start(t, dvOpts...)
	r := faultrelay.Start(t, dv.IMAPAddr)
	b := startBridge(t, dv, append([]bridgeOption{withUpstream(r.Addr())}, opts...)...)
	return b, r
}

// dial connects a POP3 client whose every read and write must be done
// within a bound: a fault must never hang a client.
func (b *bridge) dial(t *testing.T) *pop3client.Client {
	t.Helper()
	c, err := pop3client.Dial(b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// bigMessage is about size octets of 77-octet lines.
func bigMessage(subject string, size int) []byte {
	return message(subject, strings.Repeat(strings.Repeat("x", 75)+"\r\n", size/77))
}

// flagString is the message's flags, sorted, for comparisons. \Recent
// is left out: it belongs to whichever session saw the message first.
func flagString(m imapMessage) string {
	var fs []string
	for _, f := range m.Flags {
		if !strings.EqualFold(string(f), `\Recent`) {
			fs = append(fs, strings.ToLower(string(f)))
		}
	}
	slices.Sort(fs)
	return strings.Join(fs, " ")
}

// checkUntouched fails unless every message of before whose UID is not in
// except is still in after with the same flags, size and body.
func checkUntouched(t *testing.T, before, after []imapMessage, except ...uint32) {
	t.Helper()
	byUID := make(map[uint32]imapMessage, len(after))
	for _, m := range after {
		byUID[m.UID] = m
	}
	for _, m := range before {
		if slices.Contains(except, m.UID) {
			continue
		}
		a, ok := byUID[m.UID]
		switch {
		case !ok:
			t.Errorf("UID %d is gone upstream", m.UID)
		case flagString(a) != flagString(m):
			t.Errorf("UID %d flags changed upstream: %q, were %q", m.UID, flagString(a), flagString(m))
		case a.Size != m.Size || string(a.Body) != string(m.Body):
			t.Errorf("UID %d changed upstream", m.UID)
		}
	}
}

func uidsOf(msgs []imapMessage) []uint32 {
	var uids []uint32
	for _, m := range msgs {
		uids = append(uids, m.UID)
	}
	return uids
}

// waitRelayIdle waits until the relay relays no connection, i.e. popbridge
// has closed its upstream connections.
func waitRelayIdle(t *testing.T, r *faultrelay.Relay, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for r.Conns() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("popbridge still holds %d upstream connections after %v", r.Conns(), within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// loginWithin logs in as user, retrying while the answer is [IN-USE], and
// fails if that lasts longer than within.
func (b *bridge) loginWithin(t *testing.T, user string, within time.Duration) *pop3client.Client {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c := b.dial(t)
		err := c.Login(user, b.DV.Password)
		if err == nil {
			return c
		}
		c.Close()
		if errCode(err) != "IN-USE" || time.Now().After(deadline) {
			t.Fatalf("login %s: %v (after %v)", user, err, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logged reports whether a log entry with this message (and, if given, the
// field key=value) was written.
func (b *bridge) logged(msg string, kv ...string) bool {
	for _, e := range b.Logs.FilterMessage(msg).All() {
		if len(kv) == 0 {
			return true
		}
		if fmt.Sprint(e.ContextMap()[kv[0]]) == kv[1] {
			return true
		}
	}
	return false
}
