package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/uidmap"
)

var key = uidmap.Key{Upstream: "imap.example:993", User: "alice", Mailbox: "INBOX"}

// Run runs the suite; newStore returns a fresh, empty store for each case.
func Run(t *testing.T, newStore func(t *testing.T) uidmap.Store) {
	t.Helper()
	t.Run("Store", func(t *testing.T) { runStore(t, newStore) })
	t.Run("Map", func(t *testing.T) { runMap(t, newStore) })
	t.Run("Device", func(t *testing.T) { runDevice(t, newStore) })
}

func load(t *testing.T, s uidmap.Store, k uidmap.Key) *uidmap.Maildrop {
	t.Helper()
	d, err := s.Load(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func apply(t *testing.T, s uidmap.Store, k uidmap.Key, ch *uidmap.Change) {
	t.Helper()
	if err := s.Apply(context.Background(), k, ch); err != nil {
		t.Fatal(err)
	}
}

// rec returns the loaded record of uid, failing the test when there is none.
func rec(t *testing.T, d *uidmap.Maildrop, uid uint32) uidmap.Record {
	t.Helper()
	r, ok := d.Find(uid)
	if !ok {
		t.Fatalf("no record for UID %d in %+v", uid, d.Records)
	}
	return r
}

func runStore(t *testing.T, newStore func(t *testing.T) uidmap.Store) {
	ctx := context.Background()
	full := uidmap.Record{UID: 7, UIDL: "uidl-7", Hidden: true,
		FP: uidmap.Fingerprint{Size: 1234, Date: 1700000000, MessageID: "abc", HeaderHash: ""}}

	t.Run("EmptyMaildrop", func(t *testing.T) {
		d := load(t, newStore(t), key)
		if d.UIDValidity != 0 || len(d.Records) != 0 {
			t.Fatalf("unknown maildrop: got %+v, want empty", d)
		}
	})
	t.Run("ApplyThenLoadKeepsEveryField", func(t *testing.T) {
		s := newStore(t)
		apply(t, s, key, &uidmap.Change{UIDValidity: 9, Put: []uidmap.Record{full, {UID: 8, UIDL: "u8", FP: uidmap.Fingerprint{Size: 1, HeaderHash: "hh"}}}})
		d := load(t, s, key)
		if d.UIDValidity != 9 || len(d.Records) != 2 {
			t.Fatalf("got %+v", d)
		}
		if got := rec(t, d, 7); !reflect.DeepEqual(got, full) {
			t.Fatalf("record 7 = %+v, want %+v", got, full)
		}
		if rec(t, d, 8).FP.HeaderHash != "hh" || rec(t, d, 8).Hidden {
			t.Fatalf("record 8 = %+v", rec(t, d, 8))
		}
	})
	t.Run("PutReplacesAndDeleteRemoves", func(t *testing.T) {
		s := newStore(t)
		apply(t, s, key, &uidmap.Change{UIDValidity: 1, Put: []uidmap.Record{{UID: 1, UIDL: "a"}, {UID: 2, UIDL: "b"}}})
		apply(t, s, key, &uidmap.Change{Expect: 1, UIDValidity: 1, Put: []uidmap.Record{{UID: 2, UIDL: "b", Hidden: true}, {UID: 3, UIDL: "c"}}, Delete: []uint32{1}})
		d := load(t, s, key)
		if len(d.Records) != 2 || !rec(t, d, 2).Hidden || rec(t, d, 3).UIDL != "c" {
			t.Fatalf("got %+v", d.Records)
		}
		if _, ok := d.Find(1); ok {
			t.Fatal("deleted record still there")
		}
	})
	t.Run("NewUIDValidityDropsOldRecords", func(t *testing.T) {
		s := newStore(t)
		apply(t, s, key, &uidmap.Change{UIDValidity: 1, Put: []uidmap.Record{{UID: 1, UIDL: "a"}, {UID: 2, UIDL: "b"}}})
		apply(t, s, key, &uidmap.Change{Expect: 1, UIDValidity: 2, Put: []uidmap.Record{{UID: 5, UIDL: "a"}}})
		d := load(t, s, key)
		if d.UIDValidity != 2 || len(d.Records) != 1 || rec(t, d, 5).UIDL != "a" {
			t.Fatalf("got %+v", d)
		}
	})
	t.Run("KeysAreSeparate", func(t *testing.T) {
		s := newStore(t)
		apply(t, s, key, &uidmap.Change{UIDValidity: 1, Put: []uidmap.Record{{UID: 1, UIDL: "alice-1"}}})
		for _, other := range []uidmap.Key{
			{Upstream: key.Upstream, User: "bob", Mailbox: key.Mailbox},
			{Upstream: "other:993", User: key.User, Mailbox: key.Mailbox},
			{Upstream: key.Upstream, User: key.User, Mailbox: "Archive"},
			{Upstream: key.Upstream + key.User[:1], User: key.User[1:], Mailbox: key.Mailbox},
		} {
			if d := load(t, s, other); len(d.Records) != 0 {
				t.Fatalf("%+v sees alice's state: %+v", other, d)
			}
		}
	})
	t.Run("LoadIsACopy", func(t *testing.T) {
		s := newStore(t)
		apply(t, s, key, &uidmap.Change{UIDValidity: 1, Put: []uidmap.Record{{UID: 1, UIDL: "x"}}})
		d := load(t, s, key)
		d.Records[0] = uidmap.Record{UID: 1, UIDL: "changed"}
		if rec(t, load(t, s, key), 1).UIDL != "x" {
			t.Fatal("changing a loaded maildrop changed the store")
		}
	})
	t.Run("Reset", func(t *testing.T) {
		s := newStore(t)
		apply(t, s, key, &uidmap.Change{UIDValidity: 1, Put: []uidmap.Record{{UID: 1, UIDL: "x"}}})
		if err := s.Reset(ctx, key); err != nil {
			t.Fatal(err)
		}
		if d := load(t, s, key); len(d.Records) != 0 || d.UIDValidity != 0 {
			t.Fatalf("after Reset: %+v", d)
		}
		if err := s.Reset(ctx, key); err != nil {
			t.Fatalf("Reset of an unknown maildrop: %v", err)
		}
	})
	t.Run("ManyRecords", func(t *testing.T) {
		s := newStore(t)
		var put []uidmap.Record
		for uid := uint32(1); uid <= 5000; uid++ {
			put = append(put, uidmap.Record{UID: uid, UIDL: fmt.Sprintf("%08x", uid), FP: uidmap.Fingerprint{Size: int64(uid)}})
		}
		apply(t, s, key, &uidmap.Change{UIDValidity: 3, Put: put})
		d := load(t, s, key)
		if len(d.Records) != 5000 || rec(t, d, 4321).UIDL != "000010e1" || rec(t, d, 4321).FP.Size != 4321 {
			t.Fatalf("got %d records, 4321 = %+v", len(d.Records), rec(t, d, 4321))
		}
	})
	t.Run("RecordsInUIDOrder", func(t *testing.T) {
		s := newStore(t)
		apply(t, s, key, &uidmap.Change{UIDValidity: 1, Put: []uidmap.Record{{UID: 300, UIDL: "c"}, {UID: 2, UIDL: "a"}, {UID: 70000, UIDL: "d"}}})
		apply(t, s, key, &uidmap.Change{Expect: 1, UIDValidity: 1, Add: []uidmap.Record{{UID: 40, UIDL: "b"}}})
		var uids []uint32
		for _, r := range load(t, s, key).Records {
			uids = append(uids, r.UID)
		}
		if !reflect.DeepEqual(uids, []uint32{2, 40, 300, 70000}) {
			t.Fatalf("records in order %v, want ascending UIDs", uids)
		}
	})
	t.Run("StaleExpectWritesNothing", func(t *testing.T) {
		s := newStore(t)
		apply(t, s, key, &uidmap.Change{UIDValidity: 5, Add: []uidmap.Record{{UID: 1, UIDL: "a"}}})
		for _, ch := range []*uidmap.Change{
			{Expect: 0, UIDValidity: 5, Add: []uidmap.Record{{UID: 2, UIDL: "b"}}},           // computed from nothing stored
			{Expect: 4, UIDValidity: 6, Put: []uidmap.Record{{UID: 1, UIDL: "z"}}},           // a reset seen from an old state
			{Expect: 6, UIDValidity: 6, Delete: []uint32{1}, Put: []uidmap.Record{{UID: 3}}}, // from a state never stored
		} {
			if err := s.Apply(ctx, key, ch); !errors.Is(err, uidmap.ErrStale) {
				t.Fatalf("Apply(%+v) = %v, want ErrStale", ch, err)
			}
		}
		if d := load(t, s, key); d.UIDValidity != 5 || len(d.Records) != 1 || rec(t, d, 1).UIDL != "a" {
			t.Fatalf("a refused change wrote: %+v", d)
		}
	})
	t.Run("AddOfANamedUIDIsStaleAndAtomic", func(t *testing.T) {
		s := newStore(t)
		apply(t, s, key, &uidmap.Change{UIDValidity: 5, Add: []uidmap.Record{{UID: 1, UIDL: "a"}, {UID: 2, UIDL: "b"}}})
		err := s.Apply(ctx, key, &uidmap.Change{Expect: 5, UIDValidity: 5, Delete: []uint32{1},
			Add: []uidmap.Record{{UID: 3, UIDL: "c"}, {UID: 2, UIDL: "other"}}})
		if !errors.Is(err, uidmap.ErrStale) {
			t.Fatalf("Add of a stored UID = %v, want ErrStale", err)
		}
		d := load(t, s, key)
		if len(d.Records) != 2 || rec(t, d, 1).UIDL != "a" || rec(t, d, 2).UIDL != "b" {
			t.Fatalf("a refused change wrote part of itself: %+v", d.Records)
		}
		// After a reset the same UIDs name other messages: Add is no conflict.
		apply(t, s, key, &uidmap.Change{Expect: 5, UIDValidity: 6, Add: []uidmap.Record{{UID: 2, UIDL: "new-2"}}})
		if d := load(t, s, key); d.UIDValidity != 6 || len(d.Records) != 1 || rec(t, d, 2).UIDL != "new-2" {
			t.Fatalf("after the reset: %+v", d)
		}
	})
	t.Run("LockIsExclusive", func(t *testing.T) {
		s := newStore(t)
		lease, err := s.Lock(ctx, key, "session-1")
		if err != nil {
			t.Fatal(err)
		}
		if lease.Context().Err() != nil || lease.Lost() != nil {
			t.Fatalf("a lease just taken is done: %v", context.Cause(lease.Context()))
		}
		if _, err := s.Lock(ctx, key, "session-2"); !errors.Is(err, uidmap.ErrLocked) {
			t.Fatalf("second Lock: got %v, want ErrLocked", err)
		}
		other := key
		other.User = "bob"
		releaseBob, err := s.Lock(ctx, other, "session-3")
		if err != nil {
			t.Fatalf("another maildrop must not be locked: %v", err)
		}
		releaseBob.Release()
		lease.Release()
		lease.Release() // twice is harmless
		if lease.Context().Err() == nil || lease.Lost() != nil {
			t.Fatalf("after Release: context %v, Lost %v; want done, not lost", lease.Context().Err(), lease.Lost())
		}
		lease2, err := s.Lock(ctx, key, "session-2")
		if err != nil {
			t.Fatalf("Lock after release: %v", err)
		}
		lease2.Release()
	})
	t.Run("ConcurrentLockOneWinner", func(t *testing.T) {
		s := newStore(t)
		var wg sync.WaitGroup
		var mu sync.Mutex
		winners := 0
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.Lock(ctx, key, fmt.Sprint("s", i)); err == nil {
					mu.Lock()
					winners++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if winners != 1 {
			t.Fatalf("%d sessions got the lock, want 1", winners)
		}
	})
}

// ident builds the identity the upstream would report.
func ident(uid uint32, msgID string, date int64) uidmap.Identity {
	return uidmap.Identity{UID: uid, MessageID: msgID, InternalDate: time.Unix(date, 0)}
}

// upstream is a fake mailbox for the Map cases: messages and identities by UID.
type upstream struct {
	msgs  []uidmap.Message
	ids   map[uint32]uidmap.Identity
	asked [][]uint32
}

func (u *upstream) add(uid uint32, size int64, id uidmap.Identity) {
	id.UID = uid
	u.msgs = append(u.msgs, uidmap.Message{UID: uid, Size: size})
	if u.ids == nil {
		u.ids = map[uint32]uidmap.Identity{}
	}
	u.ids[uid] = id
}

func (u *upstream) identify(_ context.Context, uids []uint32) ([]uidmap.Identity, error) {
	u.asked = append(u.asked, uids)
	var out []uidmap.Identity
	for _, uid := range uids {
		if id, ok := u.ids[uid]; ok {
			out = append(out, id)
		}
	}
	return out, nil
}

func resolve(t *testing.T, m *uidmap.Map, uv uint32, u *upstream) *uidmap.View {
	t.Helper()
	v, err := m.Resolve(context.Background(), key, uv, u.msgs, u.identify)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func runMap(t *testing.T, newStore func(t *testing.T) uidmap.Store) {
	t.Run("DovecotFormatStableAcrossSessions", func(t *testing.T) {
		m := uidmap.New(newStore(t), uidmap.Options{})
		u := &upstream{}
		u.add(1, 10, ident(0, "<a@x>", 100))
		u.add(5, 20, ident(0, "<b@x>", 200))
		v := resolve(t, m, 1795627431, u)
		if v.UIDLs[0] != "000000016b0719a7" || v.UIDLs[1] != "000000056b0719a7" || !v.Fresh || v.Assigned != 2 {
			t.Fatalf("first session: %+v", v)
		}
		u.asked = nil
		v2 := resolve(t, m, 1795627431, u)
		if !reflect.DeepEqual(v2.UIDLs, v.UIDLs) || v2.Known != 2 || v2.Assigned != 0 {
			t.Fatalf("second session: %+v", v2)
		}
		if len(u.asked) != 0 {
			t.Fatalf("known messages were identified again: %v", u.asked)
		}
	})
	t.Run("OnlyNewMessagesAreIdentified", func(t *testing.T) {
		m := uidmap.New(newStore(t), uidmap.Options{})
		u := &upstream{}
		u.add(1, 10, ident(0, "<a@x>", 100))
		resolve(t, m, 1, u)
		u.add(2, 10, ident(0, "<b@x>", 100))
		u.asked = nil
		resolve(t, m, 1, u)
		if !reflect.DeepEqual(u.asked, [][]uint32{{2}}) {
			t.Fatalf("identified %v, want only UID 2", u.asked)
		}
	})
	t.Run("StoredUIDLWinsOverFormat", func(t *testing.T) {
		s := newStore(t)
		apply(t, s, key, &uidmap.Change{UIDValidity: 1, Put: []uidmap.Record{{UID: 9, UIDL: "imported-9"}}})
		u := &upstream{}
		u.add(9, 1, ident(0, "", 0))
		u.add(10, 1, ident(0, "", 0))
		v := resolve(t, uidmap.New(s, uidmap.Options{}), 1, u)
		if v.UIDLs[0] != "imported-9" || v.UIDLs[1] != "0000000a00000001" {
			t.Fatalf("got %v", v.UIDLs)
		}
	})
	t.Run("UniqueEvenAgainstImportedUIDLs", func(t *testing.T) {
		s := newStore(t)
		apply(t, s, key, &uidmap.Change{UIDValidity: 1, Put: []uidmap.Record{{UID: 3, UIDL: "0000000200000001"}}})
		u := &upstream{}
		u.add(2, 1, ident(0, "", 0))
		u.add(3, 1, ident(0, "", 0))
		v := resolve(t, uidmap.New(s, uidmap.Options{}), 1, u)
		if v.UIDLs[1] != "0000000200000001" || v.UIDLs[0] == v.UIDLs[1] || !pop3.ValidUIDL(v.UIDLs[0]) {
			t.Fatalf("got %v: UIDLs must stay unique and the stored one must not move", v.UIDLs)
		}
	})
	t.Run("UIDValidityResetKeepsUIDLs", func(t *testing.T) {
		m := uidmap.New(newStore(t), uidmap.Options{})
		before := &upstream{}
		before.add(1, 100, ident(0, "<one@x>", 1000))
		before.add(2, 200, ident(0, "", 2000)) // no Message-ID: header hash
		before.ids[2] = uidmap.Identity{UID: 2, InternalDate: time.Unix(2000, 0), Header: []byte("Subject: two\r\nFrom: a@b\r\n\r\n")}
		before.add(3, 300, ident(0, "<three@x>", 3000))
		old := resolve(t, m, 1, before)
		if err := m.SetHidden(context.Background(), key, 1, []uint32{3}, true); err != nil {
			t.Fatal(err)
		}
		// Re-created mailbox: new UIDs and UIDVALIDITY, re-APPENDed copies
		// (new INTERNALDATE, a Received header added), one new message.
		after := &upstream{}
		after.add(11, 300, ident(0, " <three@x> ", 9000))
		after.add(12, 100, ident(0, "<one@x>", 9001))
		after.add(13, 200, uidmap.Identity{InternalDate: time.Unix(9002, 0), Header: []byte("Received: by mx\r\nsubject:   two\r\nFrom: a@b\r\n\r\n")})
		after.add(14, 50, ident(0, "<new@x>", 9003))
		v := resolve(t, m, 2, after)
		if !v.Reset || v.Kept != 3 || v.Assigned != 1 {
			t.Fatalf("reset: %+v", v)
		}
		want := []string{old.UIDLs[2], old.UIDLs[0], old.UIDLs[1], "0000000e00000002"}
		if !reflect.DeepEqual(v.UIDLs, want) {
			t.Fatalf("after reset UIDLs %v, want %v", v.UIDLs, want)
		}
		if !v.Hidden[0] || v.Hidden[1] {
			t.Fatalf("hidden marks not carried over: %v", v.Hidden)
		}
		// And it is stored: the next session needs no identification.
		after.asked = nil
		v2 := resolve(t, m, 2, after)
		if !reflect.DeepEqual(v2.UIDLs, want) || len(after.asked) != 0 {
			t.Fatalf("session after the reset: %v, identified %v", v2.UIDLs, after.asked)
		}
	})
	t.Run("DuplicatesResolvedDeterministically", func(t *testing.T) {
		m := uidmap.New(newStore(t), uidmap.Options{})
		before := &upstream{}
		before.add(1, 10, ident(0, "<dup@x>", 100))
		before.add(2, 10, ident(0, "<dup@x>", 200))
		old := resolve(t, m, 1, before)
		after := &upstream{}
		after.add(20, 10, ident(0, "<dup@x>", 500)) // the later copy got the lower UID
		after.add(10, 10, ident(0, "<dup@x>", 400))
		v := resolve(t, m, 2, after)
		if v.Kept != 2 || v.UIDLs[1] != old.UIDLs[0] || v.UIDLs[0] != old.UIDLs[1] {
			t.Fatalf("duplicates: old %v, new %v (kept %d)", old.UIDLs, v.UIDLs, v.Kept)
		}
	})
	t.Run("DifferentSizeIsNotTheSameMessage", func(t *testing.T) {
		m := uidmap.New(newStore(t), uidmap.Options{})
		before := &upstream{}
		before.add(1, 10, ident(0, "<a@x>", 100))
		resolve(t, m, 1, before)
		after := &upstream{}
		after.add(1, 11, ident(0, "<a@x>", 100))
		if v := resolve(t, m, 2, after); v.Kept != 0 || v.UIDLs[0] == "0000000100000001" {
			t.Fatalf("a message of another size was taken for the old one: %+v", v)
		}
	})
	t.Run("GoneMessagesArePruned", func(t *testing.T) {
		s := newStore(t)
		m := uidmap.New(s, uidmap.Options{})
		u := &upstream{}
		u.add(1, 1, ident(0, "<a@x>", 1))
		u.add(2, 1, ident(0, "<b@x>", 1))
		resolve(t, m, 1, u)
		u.msgs = u.msgs[1:]
		if v := resolve(t, m, 1, u); v.Pruned != 1 {
			t.Fatalf("pruned %d, want 1", v.Pruned)
		}
		if d := load(t, s, key); len(d.Records) != 1 || rec(t, d, 2).UIDL == "" {
			t.Fatalf("store after prune: %+v", d.Records)
		}
	})
	t.Run("SetHidden", func(t *testing.T) {
		m := uidmap.New(newStore(t), uidmap.Options{})
		u := &upstream{}
		u.add(1, 1, ident(0, "<a@x>", 1))
		u.add(2, 1, ident(0, "<b@x>", 1))
		resolve(t, m, 1, u)
		if err := m.SetHidden(context.Background(), key, 1, []uint32{2}, true); err != nil {
			t.Fatal(err)
		}
		if v := resolve(t, m, 1, u); v.Hidden[0] || !v.Hidden[1] {
			t.Fatalf("hidden = %v", v.Hidden)
		}
		if err := m.SetHidden(context.Background(), key, 7, []uint32{1}, true); !errors.Is(err, uidmap.ErrStale) {
			t.Fatalf("hiding under a stale UIDVALIDITY: %v, want ErrStale", err)
		}
	})
	// Two sessions (two instances on one shared store, or lock: none) name
	// the same new messages at once, with formats that disagree: whichever
	// stores first wins, and the other serves the winner's UIDLs.
	t.Run("RacingSessionsNameEachMessageOnce", func(t *testing.T) {
		s := newStore(t)
		tmpl, err := uidmap.ParseFormat("other-%u")
		if err != nil {
			t.Fatal(err)
		}
		slow, fast := uidmap.New(s, uidmap.Options{}), uidmap.New(s, uidmap.Options{Format: tmpl})
		u := &upstream{}
		u.add(1, 10, ident(0, "<a@x>", 100))
		u.add(2, 10, ident(0, "<b@x>", 100))
		var won *uidmap.View
		raced := false
		identify := func(ctx context.Context, uids []uint32) ([]uidmap.Identity, error) {
			if !raced { // the other session does all its work in between
				raced = true
				won = resolve(t, fast, 1, u)
			}
			return u.identify(ctx, uids)
		}
		v, err := slow.Resolve(context.Background(), key, 1, u.msgs, identify)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(v.UIDLs, []string{"other-1", "other-2"}) || !reflect.DeepEqual(won.UIDLs, v.UIDLs) {
			t.Fatalf("the racing sessions served %v and %v; both must serve the first stored names", won.UIDLs, v.UIDLs)
		}
		if again := resolve(t, slow, 1, u); !reflect.DeepEqual(again.UIDLs, v.UIDLs) || again.Known != 2 {
			t.Fatalf("next session: %+v", again)
		}
	})
	t.Run("RacingResetReidentifiesOnce", func(t *testing.T) {
		s := newStore(t)
		a, b := uidmap.New(s, uidmap.Options{}), uidmap.New(s, uidmap.Options{})
		before := &upstream{}
		before.add(1, 10, ident(0, "<a@x>", 100))
		old := resolve(t, a, 1, before)
		after := &upstream{}
		after.add(7, 10, ident(0, "<a@x>", 900))
		after.add(8, 10, ident(0, "<new@x>", 901))
		var first *uidmap.View
		raced := false
		identify := func(ctx context.Context, uids []uint32) ([]uidmap.Identity, error) {
			if !raced {
				raced = true
				first = resolve(t, b, 2, after)
			}
			return after.identify(ctx, uids)
		}
		v, err := a.Resolve(context.Background(), key, 2, after.msgs, identify)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{old.UIDLs[0], "0000000800000002"}
		if !reflect.DeepEqual(first.UIDLs, want) || !reflect.DeepEqual(v.UIDLs, want) {
			t.Fatalf("racing resets served %v and %v, want %v from both", first.UIDLs, v.UIDLs, want)
		}
		if v.Reset || v.Known != 2 {
			t.Fatalf("the later session must find the first one's mapping: %+v", v)
		}
	})
	t.Run("ReuseXUIDL", func(t *testing.T) {
		m := uidmap.New(newStore(t), uidmap.Options{ReuseXUIDL: true})
		u := &upstream{}
		u.add(1, 1, uidmap.Identity{XUIDL: "legacy-uidl-1"})
		u.add(2, 1, uidmap.Identity{XUIDL: "has space"}) // not a valid UIDL: ignored
		u.add(3, 1, uidmap.Identity{XUIDL: "legacy-uidl-1"})
		v := resolve(t, m, 1, u)
		if v.UIDLs[0] != "legacy-uidl-1" || v.UIDLs[1] != "0000000200000001" || v.UIDLs[2] != "legacy-uidl-1-2" {
			t.Fatalf("got %v", v.UIDLs)
		}
	})
	t.Run("TemplateFormat", func(t *testing.T) {
		f, err := uidmap.ParseFormat("%v.%u")
		if err != nil {
			t.Fatal(err)
		}
		m := uidmap.New(newStore(t), uidmap.Options{Format: f})
		u := &upstream{}
		u.add(42, 1, uidmap.Identity{})
		if v := resolve(t, m, 7, u); v.UIDLs[0] != "7.42" {
			t.Fatalf("got %v", v.UIDLs)
		}
	})
}
