package proxy

import (
	"testing"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/uidmap"
)

func testDialer(t *testing.T, addr, mailbox string) *imapupstream.Dialer {
	t.Helper()
	d, err := imapupstream.NewDialer(imapupstream.Config{Address: addr, TLS: imapupstream.TLSNone, Mailbox: mailbox}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestRoute: the domain after the last '@' picks a route, exactly and
// case-insensitively; anyone else gets the default upstream.
func TestRoute(t *testing.T) {
	one, two := testDialer(t, "one:143", ""), testDialer(t, "two:143", "POP")
	b, err := New(Options{
		Dialer: testDialer(t, "default:143", ""), UpstreamID: "default:143", Mailbox: "INBOX",
		Map:    uidmap.New(uidmap.NewMemoryStore(), uidmap.Options{}),
		Policy: Policy{OnDele: OnDeleExpunge, TrashMailbox: "Trash"},
		Routes: []Route{
			{Domain: "One.Test", Dialer: one, OnDele: OnDeleHide},
			{Domain: "two.test", Dialer: two, UpstreamID: "two-id", TrashMailbox: "Bin", OnDele: OnDeleTrash},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	opts := b.live.Load()
	for _, tc := range []struct {
		user, upstream, mailbox string
		onDele                  OnDele
		trash                   string
	}{
		{"a@one.test", "one:143", "INBOX", OnDeleHide, "Trash"},
		{"A@ONE.TEST", "one:143", "INBOX", OnDeleHide, "Trash"},
		{"b@two.test", "two-id", "POP", OnDeleTrash, "Bin"},
		{"x@y@two.test", "two-id", "POP", OnDeleTrash, "Bin"}, // the last '@'
		{"two.test@other.test", "default:143", "INBOX", OnDeleExpunge, "Trash"},
		{"c", "default:143", "INBOX", OnDeleExpunge, "Trash"},
		{"d@other.test", "default:143", "INBOX", OnDeleExpunge, "Trash"},
		{"e@sub.one.test", "default:143", "INBOX", OnDeleExpunge, "Trash"}, // exact match only
		{"f@", "default:143", "INBOX", OnDeleExpunge, "Trash"},
	} {
		o := opts.ForUser(tc.user)
		if o.UpstreamID != tc.upstream || o.Mailbox != tc.mailbox || o.Policy.OnDele != tc.onDele ||
			o.Policy.TrashMailbox != tc.trash {
			t.Errorf("%s: upstream %q mailbox %q on_dele %q trash %q; want %q %q %q %q", tc.user, o.UpstreamID,
				o.Mailbox, o.Policy.OnDele, o.Policy.TrashMailbox, tc.upstream, tc.mailbox, tc.onDele, tc.trash)
		}
		if r := opts.route(tc.user); (r == nil) != (o == opts) || (r != nil && o.Dialer != r.Dialer) {
			t.Errorf("%s: route %+v, options %+v", tc.user, r, o)
		}
	}
	if opts.Policy.OnDele != OnDeleExpunge || opts.UpstreamID != "default:143" {
		t.Fatalf("a route changed the default options: %+v", opts)
	}
}

func TestRouteNeedsDomainAndDialer(t *testing.T) {
	base := Options{Dialer: testDialer(t, "default:143", ""), Map: uidmap.New(uidmap.NewMemoryStore(), uidmap.Options{})}
	for _, r := range []Route{{Dialer: base.Dialer}, {Domain: "x.test"}} {
		o := base
		o.Routes = []Route{r}
		if _, err := New(o); err == nil {
			t.Errorf("route %+v accepted", r)
		}
	}
}
