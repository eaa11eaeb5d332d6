package proxy_test

// Legacy UIDL formats against the old servers themselves: popbridge in front
// of a Cyrus with policy.uidl_format set for Cyrus's uidl_format must list
// exactly what Cyrus's own pop3d lists, message by message, so that a site
// moving its POP3 users from Cyrus's pop3d to popbridge has no client
// download anything twice.

import (
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/internal/testenv"
	"github.com/popbridge/popbridge/internal/testenv/cyrus"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/uidmap"
)

// withUIDLFormat names new messages with policy.uidl_format spec (a fresh
// memory store: every message is new to it).
func withUIDLFormat(t testing.TB, spec string) bridgeOption {
	f, err := uidmap.ParseFormat(spec)
	if err != nil {
		t.Fatalf("uidl_format %q: %v", spec, err)
	}
	return func(o *proxy.Options, _ *imapupstream.Config, _ *pop3.Server) {
		o.Map = uidmap.New(uidmap.NewMemoryStore(), uidmap.Options{Format: f})
	}
}

// TestCyrusUIDLFormats: for each of Cyrus 3.6's uidl_format settings
// (imapd.conf; pop3d.c's uidl_msg), the policy.uidl_format that gives the
// same UIDLs. The mailbox has a gap in its UIDs (an expunged message), a
// \Seen message and one without Message-ID, so that neither the message
// numbers nor the headers could stand in for the UIDs.
func TestCyrusUIDLFormats(t *testing.T) {
	t.Parallel()
	cases := []struct{ cyrusSetting, popbridge string }{
		{"", "cyrus"}, // Cyrus's default is uidl_format: cyrus
		{"cyrus", "cyrus"},
		{"uidonly", "%u"},
		{"dovecot", "dovecot"},
		{"courier", "%v-%u"},
	}
	for _, c := range cases {
		name := c.cyrusSetting
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			opts := []cyrus.Option{cyrus.WithPOP3()}
			if c.cyrusSetting != "" {
				opts = append(opts, cyrus.WithSetting("uidl_format", c.cyrusSetting))
			}
			up := cyrusServer{cyrus.Start(t, opts...)}
			user := up.User(t)
			up.Append(t, user, "INBOX", message("one", "1\r\n"))
			gone := up.Append(t, user, "INBOX", message("two", "2\r\n"))
			up.Append(t, user, "INBOX", message("three", "3\r\n"), imap.FlagSeen)
			up.Append(t, user, "INBOX", []byte("From: x@example.org\r\nSubject: no message-id\r\n\r\n4\r\n"))
			expunge(t, up, user, gone)

			want := testenv.POP3Listing(t, up.POP3Addr, user, up.Password)
			b := startBridge(t, up, withUIDLFormat(t, c.popbridge))
			got := testenv.POP3Listing(t, b.Addr, user, b.Password)
			if len(want) != 3 {
				t.Fatalf("Cyrus's pop3d lists %+v, want 3 messages", want)
			}
			if len(got) != len(want) {
				t.Fatalf("popbridge lists %+v, Cyrus's pop3d %+v", got, want)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("message %d: popbridge %q, Cyrus's pop3d %q", want[i].N, got[i].Value, want[i].Value)
				}
			}
			t.Logf("uidl_format %s: Cyrus and popbridge (%s) list %v", name, c.popbridge, want)
		})
	}
}

// expunge removes the message uid from the user's INBOX over IMAP.
func expunge(t *testing.T, up upstream, user string, uid uint32) {
	t.Helper()
	c := up.Client(t, user)
	defer c.Close()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	set := imap.UIDSetNum(imap.UID(uid))
	store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}
	if err := c.Store(set, store, nil).Close(); err != nil {
		t.Fatalf("store \\Deleted on UID %d: %v", uid, err)
	}
	if err := c.UIDExpunge(set).Close(); err != nil {
		t.Fatalf("UID EXPUNGE %d: %v", uid, err)
	}
}
