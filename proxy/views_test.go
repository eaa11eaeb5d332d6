package proxy_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/proxy"
)

// withViews sets the options of maildrop views.
func withViews(f func(o *proxy.Options)) bridgeOption {
	return func(o *proxy.Options, _ *imapupstream.Config, _ *pop3.Server) { f(o) }
}

// downloadAll is a leave-on-server client's poll in hide mode: RETR and
// DELE everything listed, QUIT. It returns what it downloaded, by UIDL.
func downloadAll(t *testing.T, b *bridge, login string) map[string][]byte {
	t.Helper()
	c := b.loginEventually(t, login)
	got := map[string][]byte{}
	for i, u := range listUIDLs(t, c) {
		body, err := c.Retr(i + 1)
		if err != nil {
			t.Fatalf("%s: RETR %d: %v", login, i+1, err)
		}
		got[u] = body
		if _, err := c.Cmd("DELE %d", i+1); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Quit(); err != nil {
		t.Fatalf("%s: QUIT: %v", login, err)
	}
	return got
}

// TestDevicesHideSeparately: two devices of one user in hide mode (phone
// and laptop) each download every message once; what one DELEtes the
// other still gets; the UIDLs are the user's, the same on both; nothing
// is removed or marked upstream; the plain login sees everything.
func TestDevicesHideSeparately(t *testing.T) {
	dv := dovecot.Start(t)
	pol := defaultPolicy()
	pol.OnDele = proxy.OnDeleHide
	b := startBridge(t, dv, withPolicy(pol), withViews(func(o *proxy.Options) { o.DeviceSeparator = "#" }))
	user := dovecot.User(t)
	for i := range 3 {
		dv.Append(t, user, "INBOX", message(fmt.Sprint("first ", i), "body\r\n"))
	}
	phone := downloadAll(t, b, user+"#phone")
	if len(phone) != 3 {
		t.Fatalf("phone's first poll got %d messages", len(phone))
	}
	dv.Append(t, user, "INBOX", message("fourth", "body\r\n"))
	if again := downloadAll(t, b, user+"#phone"); len(again) != 1 {
		t.Fatalf("phone's second poll got %d messages, want only the new one", len(again))
	}
	laptop := downloadAll(t, b, user+"#laptop")
	if len(laptop) != 4 {
		t.Fatalf("laptop got %d messages, want all 4: the phone's DELEs are the phone's", len(laptop))
	}
	for u := range phone {
		if _, ok := laptop[u]; !ok {
			t.Fatalf("UIDL %s of the phone is not the laptop's: devices share the user's UIDLs", u)
		}
	}
	if again := downloadAll(t, b, user+"#laptop"); len(again) != 0 {
		t.Fatalf("laptop downloaded %d messages twice", len(again))
	}
	plain := b.loginEventually(t, user)
	if n, _, err := plain.Stat(); err != nil || n != 4 {
		t.Fatalf("the plain login sees %d %v, want all 4", n, err)
	}
	plain.Quit()
	_, msgs := imapState(t, dv, user, "INBOX")
	if len(msgs) != 4 {
		t.Fatalf("upstream has %d messages, want 4", len(msgs))
	}
	for _, m := range msgs {
		if hasFlag(m, proxy.HiddenKeyword) {
			t.Fatalf("a device's hide reached the upstream as %s: %+v", proxy.HiddenKeyword, m)
		}
	}
}

// TestDeviceLocksAreSeparate: two devices poll at the same time; a second
// session of one device is [IN-USE].
func TestDeviceLocksAreSeparate(t *testing.T) {
	dv := dovecot.Start(t)
	b := startBridge(t, dv, withViews(func(o *proxy.Options) { o.DeviceSeparator = "#" }))
	user := dovecot.User(t)
	b.login(t, user+"#phone")
	b.login(t, user+"#laptop")
	c := b.dial(t)
	if err := c.Login(user+"#phone", b.Password); errCode(err) != "IN-USE" {
		t.Fatalf("a second session of the phone: %v", err)
	}
}

// TestNewDeviceFromNow: with new_device from_now a device's first login
// lists nothing that was already there; mail that arrives later it gets.
func TestNewDeviceFromNow(t *testing.T) {
	dv := dovecot.Start(t)
	pol := defaultPolicy()
	pol.OnDele = proxy.OnDeleHide
	b := startBridge(t, dv, withPolicy(pol), withViews(func(o *proxy.Options) {
		o.DeviceSeparator, o.NewDeviceFromNow = "#", true
	}))
	user := dovecot.User(t)
	dv.Append(t, user, "INBOX", message("old", "x\r\n"))
	c := b.login(t, user+"#scanner")
	if n, _, err := c.Stat(); err != nil || n != 0 {
		t.Fatalf("new device lists %d %v, want 0", n, err)
	}
	c.Quit()
	dv.Append(t, user, "INBOX", message("new", "y\r\n"))
	c = b.loginEventually(t, user+"#scanner")
	body, err := c.Retr(1)
	if err != nil || !strings.Contains(string(body), "Subject: new") {
		t.Fatalf("RETR 1 = %q %v, want the new message", body, err)
	}
	if n, _, _ := c.Stat(); n != 1 {
		t.Fatalf("STAT %d, want 1", n)
	}
}

// appendAt appends msg to the user's INBOX with the given INTERNALDATE.
func appendAt(t *testing.T, dv *dovecot.Server, user string, msg []byte, at time.Time) {
	t.Helper()
	c := dv.Client(t, user)
	defer c.Close()
	cmd := c.Append("INBOX", int64(len(msg)), &imap.AppendOptions{Time: at})
	if _, err := cmd.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

// TestWindow: policy.window lists only the newest N, the recent and the
// small; the rest stays upstream, outside the listing and out of reach.
func TestWindow(t *testing.T) {
	dv := dovecot.Start(t)
	user := dovecot.User(t)
	now := time.Now()
	appendAt(t, dv, user, message("ancient", "a\r\n"), now.AddDate(0, 0, -40))
	appendAt(t, dv, user, message("big", strings.Repeat("b", 5000)+"\r\n"), now)
	for i := range 5 {
		appendAt(t, dv, user, message(fmt.Sprint("recent ", i), "r\r\n"), now.Add(-time.Duration(i)*time.Hour))
	}
	for _, tt := range []struct {
		name string
		w    proxy.Window
		want []string
	}{
		{"none", proxy.Window{}, []string{"ancient", "big", "recent 0", "recent 1", "recent 2", "recent 3", "recent 4"}},
		{"since 30 days", proxy.Window{Since: 30 * 24 * time.Hour}, []string{"big", "recent 0", "recent 1", "recent 2", "recent 3", "recent 4"}},
		{"max size", proxy.Window{MaxSize: 1000}, []string{"ancient", "recent 0", "recent 1", "recent 2", "recent 3", "recent 4"}},
		{"newest 3 of the small recent", proxy.Window{Newest: 3, Since: 30 * 24 * time.Hour, MaxSize: 1000}, []string{"recent 2", "recent 3", "recent 4"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := startBridge(t, dv, withViews(func(o *proxy.Options) { o.Window = tt.w }))
			if got := subjectsOf(t, b, user); !slices.Equal(got, tt.want) {
				t.Fatalf("listed %q, want %q", got, tt.want)
			}
		})
	}
	// UIDLs do not depend on the window: a message keeps its name when it
	// moves into the window.
	store := startBridge(t, dv)
	c := store.loginEventually(t, user)
	full := listUIDLs(t, c)
	c.Quit()
	narrow := startBridge(t, dv, withStore(store.Store), withViews(func(o *proxy.Options) { o.Window = proxy.Window{Newest: 2} }))
	if got := listUIDLs(t, narrow.loginEventually(t, user)); !slices.Equal(got, full[len(full)-2:]) {
		t.Fatalf("window UIDLs %q, want the last two of %q", got, full)
	}
}

// TestWindowNewestOfTenThousand: newest 100 of a 10,000-message mailbox
// lists exactly the 100 newest, with the UIDLs the full listing has.
func TestWindowNewestOfTenThousand(t *testing.T) {
	dv := dovecot.Start(t)
	user := dovecot.User(t)
	dv.FillMaildir(t, user, 10000, func(i int) []byte { return message(fmt.Sprint("m", i), "x\r\n") })
	full := startBridge(t, dv)
	c := full.loginEventually(t, user)
	all := listUIDLs(t, c)
	c.Quit()
	if len(all) != 10000 {
		t.Fatalf("full listing has %d", len(all))
	}
	b := startBridge(t, dv, withStore(full.Store), withViews(func(o *proxy.Options) { o.Window = proxy.Window{Newest: 100} }))
	start := time.Now()
	c = b.loginEventually(t, user)
	took := time.Since(start)
	got := listUIDLs(t, c)
	if !slices.Equal(got, all[len(all)-100:]) {
		t.Fatalf("newest 100: %d UIDLs, not the last 100 of the full listing", len(got))
	}
	t.Logf("login with newest 100 of 10,000: %v", took)
}

// TestLoginDelay: limits.login_delay holds back a second login of one
// view with [LOGIN-DELAY]; another device is its own view.
func TestLoginDelay(t *testing.T) {
	dv := dovecot.Start(t)
	const delay = 2 * time.Second
	b := startBridge(t, dv, withViews(func(o *proxy.Options) { o.LoginDelay, o.DeviceSeparator = delay, "#" }))
	user := dovecot.User(t)
	first := time.Now()
	b.login(t, user).Quit()
	c := b.dial(t)
	err := c.Login(user, b.Password)
	if errCode(err) != "LOGIN-DELAY" {
		t.Fatalf("a second login at once: %v, want -ERR [LOGIN-DELAY]", err)
	}
	b.login(t, user+"#phone").Quit() // another view
	time.Sleep(time.Until(first.Add(delay + 100*time.Millisecond)))
	if err := c.Login(user, b.Password); err != nil {
		t.Fatalf("after the delay, on the same connection: %v", err)
	}
}
