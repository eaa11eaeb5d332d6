package storetest

import (
	"context"
	"slices"
	"testing"

	"github.com/popbridge/popbridge/uidmap"
)

// Logins checks a store's listing of user names by prefix (a user's
// devices): other upstreams and mailboxes stay out, and so do names that
// only match through a LIKE wildcard.
func Logins(t *testing.T, s uidmap.Store, logins func(ctx context.Context, upstream, mailbox, prefix string) ([]string, error)) {
	t.Helper()
	ctx := context.Background()
	for _, k := range []uidmap.Key{
		{Upstream: "imap.example.net:993", User: "al_ce#phone", Mailbox: "INBOX"},
		{Upstream: "imap.example.net:993", User: "al_ce#laptop", Mailbox: "INBOX"},
		{Upstream: "imap.example.net:993", User: "al_ce", Mailbox: "INBOX"},
		{Upstream: "imap.example.net:993", User: "alice#phone", Mailbox: "INBOX"}, // '_' is no wildcard
		{Upstream: "imap.example.net:993", User: "al_ce#other", Mailbox: "Junk"},
		{Upstream: "imap2.example.net:993", User: "al_ce#tablet", Mailbox: "INBOX"},
	} {
		apply(t, s, k, &uidmap.Change{UIDValidity: 1, Put: []uidmap.Record{{UID: 1, UIDL: "u1"}}})
	}
	got, err := logins(ctx, "imap.example.net:993", "INBOX", "al_ce#")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"al_ce#laptop", "al_ce#phone"}; !slices.Equal(got, want) {
		t.Fatalf("logins %q, want %q", got, want)
	}
}
