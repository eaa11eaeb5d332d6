package uidmap

import (
	"context"
	"testing"
	"time"
)

// TestAdoptingKeepsAMovedMessagesUIDL: a message that left one folder and
// arrived in another keeps its UIDL and hidden mark there; other new
// messages are named by the folder's format, with its suffix.
func TestAdoptingKeepsAMovedMessagesUIDL(t *testing.T) {
	ctx := context.Background()
	store := NewMemoryStore()
	inbox := New(store, Options{})
	junk := inbox.WithUIDLSuffix("-J")
	kInbox := Key{Upstream: "u", User: "alice", Mailbox: "INBOX"}
	kJunk := Key{Upstream: "u", User: "alice", Mailbox: "Junk"}
	id := func(uid uint32, msgID string) Identifier {
		return func(context.Context, []uint32) ([]Identity, error) {
			return []Identity{{UID: uid, MessageID: msgID, InternalDate: time.Unix(1700000000, 0)}}, nil
		}
	}
	v, err := junk.Resolve(ctx, kJunk, 9, []Message{{UID: 4, Size: 100}}, id(4, "<spam@x>"))
	if err != nil || v.UIDLs[0] != "000000040000000"+"9-J" {
		t.Fatalf("junk: %+v %v", v, err)
	}
	if err := junk.SetHidden(ctx, kJunk, 9, []uint32{4}, true); err != nil {
		t.Fatal(err)
	}
	// The message moves to INBOX (UID 7 there).
	gone, err := junk.Vanished(ctx, kJunk, 9, nil)
	if err != nil || len(gone) != 1 || gone[0].UIDL != v.UIDLs[0] {
		t.Fatalf("vanished: %+v %v", gone, err)
	}
	w, err := inbox.ResolveAdopting(ctx, kInbox, 5, []Message{{UID: 7, Size: 100}}, id(7, "<spam@x>"), gone)
	if err != nil || w.UIDLs[0] != v.UIDLs[0] || !w.Hidden[0] || w.Kept != 1 {
		t.Fatalf("inbox after the move: %+v %v", w, err)
	}
	// Stored under INBOX now: the next session knows it without donors.
	again, err := inbox.Resolve(ctx, kInbox, 5, []Message{{UID: 7, Size: 100}}, nil)
	if err != nil || again.UIDLs[0] != v.UIDLs[0] || again.Known != 1 {
		t.Fatalf("next session: %+v %v", again, err)
	}
	// A different message does not take a donor's name.
	x, err := inbox.ResolveAdopting(ctx, kInbox, 5, []Message{{UID: 7, Size: 100}, {UID: 8, Size: 55}}, id(8, "<other@x>"), gone)
	if err != nil || x.UIDLs[1] == v.UIDLs[0] || x.UIDLs[1] != "000000080000000"+"5" {
		t.Fatalf("another message: %+v %v", x, err)
	}
}
