package storetest

import (
	"context"
	"reflect"
	"testing"

	"github.com/popbridge/popbridge/uidmap"
)

// runDevice checks device views (Map.DeviceView) on a store: they rely on
// a maildrop whose UIDVALIDITY is stored even without records.
func runDevice(t *testing.T, newStore func(t *testing.T) uidmap.Store) {
	ctx := context.Background()
	dev := uidmap.Key{Upstream: key.Upstream, User: key.User + "#phone", Mailbox: key.Mailbox}
	msgs := func(uids ...uint32) []uidmap.Message {
		out := make([]uidmap.Message, len(uids))
		for i, u := range uids {
			out[i] = uidmap.Message{UID: u, Size: 10}
		}
		return out
	}
	view := func(t *testing.T, m *uidmap.Map, uv uint32, ms []uidmap.Message, uidls []string, fromNow bool) ([]bool, bool) {
		t.Helper()
		h, fresh, err := m.DeviceView(ctx, dev, uv, ms, uidls, fromNow)
		if err != nil {
			t.Fatal(err)
		}
		return h, fresh
	}

	t.Run("EmptyApplyKeepsUIDValidity", func(t *testing.T) {
		s := newStore(t)
		apply(t, s, key, &uidmap.Change{UIDValidity: 5})
		if d := load(t, s, key); d.UIDValidity != 5 || len(d.Records) != 0 {
			t.Fatalf("got %+v, want UIDVALIDITY 5 and no records", d)
		}
	})
	t.Run("FromNowHidesOnlyWhatWasThere", func(t *testing.T) {
		m := uidmap.New(newStore(t), uidmap.Options{})
		h, fresh := view(t, m, 7, msgs(1, 2), []string{"a", "b"}, true)
		if !fresh || !reflect.DeepEqual(h, []bool{true, true}) {
			t.Fatalf("first view %v fresh=%v: want everything there hidden", h, fresh)
		}
		h, fresh = view(t, m, 7, msgs(1, 2, 3), []string{"a", "b", "c"}, true)
		if fresh || !reflect.DeepEqual(h, []bool{true, true, false}) {
			t.Fatalf("second view %v fresh=%v: want the new message shown", h, fresh)
		}
	})
	t.Run("FromNowOnAnEmptyFirstView", func(t *testing.T) {
		m := uidmap.New(newStore(t), uidmap.Options{})
		if _, fresh := view(t, m, 7, nil, nil, true); !fresh {
			t.Fatal("first view not fresh")
		}
		if h, fresh := view(t, m, 7, msgs(4), []string{"d"}, true); fresh || h[0] {
			t.Fatalf("a message that arrived after an empty first view: hidden=%v fresh=%v", h, fresh)
		}
	})
	t.Run("MarksFollowUIDLsAcrossUIDValidity", func(t *testing.T) {
		s := newStore(t)
		m := uidmap.New(s, uidmap.Options{})
		view(t, m, 7, msgs(1, 2, 3), []string{"a", "b", "c"}, false)
		if err := m.SetHidden(ctx, dev, 7, []uint32{2}, true); err != nil {
			t.Fatal(err)
		}
		// The mailbox was re-created: new UIDs, the same messages (the
		// shared maildrop kept their UIDLs), one gone, one new.
		h, _ := view(t, m, 8, msgs(10, 11, 12), []string{"c", "b", "z"}, false)
		if !reflect.DeepEqual(h, []bool{false, true, false}) {
			t.Fatalf("after UIDVALIDITY change: %v, want b still hidden", h)
		}
		d := load(t, s, dev)
		if d.UIDValidity != 8 || len(d.Records) != 3 || !rec(t, d, 11).Hidden {
			t.Fatalf("device state %+v", d)
		}
		// Gone messages are forgotten; a UID the shared maildrop renamed
		// loses its old mark.
		h, _ = view(t, m, 8, msgs(11, 12), []string{"b2", "z"}, false)
		if !reflect.DeepEqual(h, []bool{false, false}) {
			t.Fatalf("renamed UID kept a mark: %v", h)
		}
		if d := load(t, s, dev); len(d.Records) != 2 {
			t.Fatalf("gone message not forgotten: %+v", d)
		}
	})
	t.Run("DevicesAreSeparate", func(t *testing.T) {
		s := newStore(t)
		m := uidmap.New(s, uidmap.Options{})
		view(t, m, 7, msgs(1), []string{"a"}, false)
		if err := m.SetHidden(ctx, dev, 7, []uint32{1}, true); err != nil {
			t.Fatal(err)
		}
		other := dev
		other.User = key.User + "#laptop"
		h, _, err := m.DeviceView(ctx, other, 7, msgs(1), []string{"a"}, false)
		if err != nil || h[0] {
			t.Fatalf("another device sees the phone's mark: %v %v", h, err)
		}
	})
}
