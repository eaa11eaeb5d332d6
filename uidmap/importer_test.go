package uidmap_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/popbridge/popbridge/uidmap"
)

// A fake old server and a fake upstream for the import matching: each
// message has a header (hashed when asked for) and a size.

type oldMsg struct {
	uidl   string
	size   int64
	header string
	uid    uint32
}

type newMsg struct {
	uid    uint32
	size   int64
	header string
}

type fakeImport struct {
	src       uidmap.ImportSource
	dst       uidmap.ImportTarget
	oldAsked  []int    // indexes whose headers were asked for
	newAsked  []uint32 // UIDs whose headers were asked for
	identAsk  []uint32 // UIDs identified
	newByUID  map[uint32]newMsg
	oldHeader []string
}

func hdr(subject string, extra ...string) string {
	h := "From: a@example.net\r\nSubject: " + subject + "\r\n"
	for _, e := range extra {
		h += e + "\r\n"
	}
	return h + "\r\n"
}

func newFakeImport(old []oldMsg, oldValidity uint32, cur []newMsg, validity uint32) *fakeImport {
	f := &fakeImport{newByUID: make(map[uint32]newMsg)}
	f.src.UIDValidity = oldValidity
	for _, m := range old {
		f.src.Messages = append(f.src.Messages, uidmap.OldMessage{UIDL: m.uidl, Size: m.size, UID: m.uid})
		f.oldHeader = append(f.oldHeader, m.header)
	}
	f.src.HeaderHashes = func(_ context.Context, idx []int) (map[int]string, error) {
		f.oldAsked = append(f.oldAsked, idx...)
		out := make(map[int]string)
		for _, i := range idx {
			if f.oldHeader[i] != "" {
				out[i] = uidmap.HeaderHash([]byte(f.oldHeader[i]))
			}
		}
		return out, nil
	}
	f.dst.UIDValidity = validity
	for _, m := range cur {
		f.dst.Messages = append(f.dst.Messages, uidmap.Message{UID: m.uid, Size: m.size})
		f.newByUID[m.uid] = m
	}
	f.dst.HeaderHashes = func(_ context.Context, uids []uint32) (map[uint32]string, error) {
		f.newAsked = append(f.newAsked, uids...)
		out := make(map[uint32]string)
		for _, u := range uids {
			if m, ok := f.newByUID[u]; ok && m.header != "" {
				out[u] = uidmap.HeaderHash([]byte(m.header))
			}
		}
		return out, nil
	}
	f.dst.Identify = func(_ context.Context, uids []uint32) ([]uidmap.Identity, error) {
		f.identAsk = append(f.identAsk, uids...)
		var out []uidmap.Identity
		for _, u := range uids {
			m, ok := f.newByUID[u]
			if !ok {
				continue
			}
			out = append(out, uidmap.Identity{UID: u, InternalDate: time.Unix(1700000000+int64(u), 0),
				MessageID: fmt.Sprintf("<%s@example.net>", m.header), Header: []byte(m.header)})
		}
		return out, nil
	}
	return f
}

func (f *fakeImport) match(t *testing.T) *uidmap.ImportResult {
	t.Helper()
	res, err := uidmap.MatchImport(context.Background(), f.src, f.dst)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// pairs renders matches as "UID=UIDL/pass".
func pairs(res *uidmap.ImportResult) []string {
	var out []string
	for _, m := range res.Matches {
		out = append(out, fmt.Sprintf("%d=%s/%s", m.UID, m.UIDL, m.Pass))
	}
	return out
}

func wantPairs(t *testing.T, res *uidmap.ImportResult, want ...string) {
	t.Helper()
	if got := pairs(res); !reflect.DeepEqual(got, want) {
		t.Fatalf("matches\n got %v\nwant %v", got, want)
	}
}

func TestImportMatchesSizesInOrder(t *testing.T) {
	f := newFakeImport([]oldMsg{
		{uidl: "old-a", size: 100, header: hdr("a")},
		{uidl: "old-b", size: 200, header: hdr("b")},
		{uidl: "old-c", size: 150, header: hdr("c")},
	}, 0, []newMsg{
		{uid: 7, size: 100, header: hdr("a")},
		{uid: 9, size: 200, header: hdr("b")},
		{uid: 12, size: 150, header: hdr("c")},
		{uid: 13, size: 999, header: hdr("new since")}, // arrived after the migration
	}, 42)
	res := f.match(t)
	wantPairs(t, res, "7=old-a/size-order", "9=old-b/size-order", "12=old-c/size-order")
	if !reflect.DeepEqual(res.UnmatchedNew, []uint32{13}) || len(res.UnmatchedOld) != 0 {
		t.Fatalf("unmatched: old %v, new %v", res.UnmatchedOld, res.UnmatchedNew)
	}
	if len(f.oldAsked)+len(f.newAsked) != 0 {
		t.Fatalf("sizes settled everything, yet headers were fetched: old %v, new %v", f.oldAsked, f.newAsked)
	}
}

// TestImportMatchesHeaderHashWhenSizesCollide: neighbours of equal size
// could be in either order; their headers tell. Headers are fetched only
// for what the sizes left open.
func TestImportMatchesHeaderHashWhenSizesCollide(t *testing.T) {
	f := newFakeImport([]oldMsg{
		{uidl: "A", size: 100, header: hdr("a")},
		{uidl: "B", size: 300, header: hdr("b")},
		{uidl: "C", size: 300, header: hdr("c")},
		{uidl: "D", size: 400, header: hdr("d")},
	}, 0, []newMsg{
		{uid: 1, size: 100, header: hdr("a")},
		{uid: 2, size: 300, header: hdr("c")}, // the upstream stored C before B
		{uid: 3, size: 300, header: hdr("b")},
		{uid: 4, size: 400, header: hdr("d")},
	}, 42)
	res := f.match(t)
	wantPairs(t, res, "1=A/size-order", "2=C/header+size", "3=B/header+size", "4=D/size-order")
	if !reflect.DeepEqual(f.oldAsked, []int{1, 2}) || !reflect.DeepEqual(f.newAsked, []uint32{2, 3}) {
		t.Fatalf("headers asked for: old %v, new %v; want only the two of equal size", f.oldAsked, f.newAsked)
	}
}

// TestImportReceivedHeadersDoNotMatter: the old server's copy has other
// Received/Return-Path/X-UIDL lines and other folding; it still matches.
func TestImportReceivedHeadersDoNotMatter(t *testing.T) {
	oldH := "Return-Path: <x@y>\r\nReceived: from a by b\r\n\tid 1\r\nX-UIDL: abc\r\nStatus: RO\r\nFrom: a@example.net\r\nSubject:   long\r\n  folded\r\n\r\n"
	newH := "Received: from c by d; Mon, 1 Jan 2024\r\nFrom: a@example.net\r\nSubject: long folded\r\n\r\n"
	f := newFakeImport([]oldMsg{{uidl: "X", size: 500, header: oldH}, {uidl: "Y", size: 10, header: hdr("y")}}, 0,
		[]newMsg{{uid: 5, size: 520, header: newH}}, 1)
	res := f.match(t)
	wantPairs(t, res, "5=X/header")
	if !reflect.DeepEqual(res.UnmatchedOld, []int{1}) {
		t.Fatalf("unmatched old %v, want [1]", res.UnmatchedOld)
	}
}

// TestImportDuplicatesPairInOrder: the same message stored several times
// pairs old messages in POP3 order with IMAP messages in UID order, however
// the snapshot is ordered; a spare copy stays unmatched.
func TestImportDuplicatesPairInOrder(t *testing.T) {
	dup := hdr("the same")
	old := []oldMsg{
		{uidl: "first", size: 50, header: dup},
		{uidl: "second", size: 50, header: dup},
		{uidl: "other", size: 60, header: hdr("other")},
	}
	cur := []newMsg{
		{uid: 30, size: 60, header: hdr("other")},
		{uid: 21, size: 50, header: dup},
		{uid: 40, size: 50, header: dup},
		{uid: 22, size: 50, header: dup},
	}
	var first []string
	for round := range 3 {
		c := slices.Clone(cur)
		for i := range c { // another order each round
			j := (i + round) % len(c)
			c[i], c[j] = c[j], c[i]
		}
		res := newFakeImport(old, 0, c, 9).match(t)
		if round == 0 {
			first = pairs(res)
			wantPairs(t, res, "21=first/header+size", "22=second/header+size", "30=other/size-order")
			if !reflect.DeepEqual(res.UnmatchedNew, []uint32{40}) {
				t.Fatalf("unmatched new %v, want [40]", res.UnmatchedNew)
			}
		} else if !reflect.DeepEqual(pairs(res), first) {
			t.Fatalf("round %d: %v, round 0: %v: the outcome must not depend on the snapshot's order", round, pairs(res), first)
		}
	}
}

func TestImportUnmatchedOnBothSides(t *testing.T) {
	f := newFakeImport([]oldMsg{
		{uidl: "A", size: 100, header: hdr("a")},
		{uidl: "gone", size: 200, header: hdr("deleted upstream")},
		{uidl: "C", size: 300, header: hdr("c")},
		{uidl: "noheader", size: 400}, // the old server gave no TOP for it
	}, 0, []newMsg{
		{uid: 1, size: 100, header: hdr("a")},
		{uid: 3, size: 300, header: hdr("c")},
		{uid: 4, size: 410, header: hdr("d")},
		{uid: 5, size: 500, header: hdr("new")},
	}, 7)
	res := f.match(t)
	wantPairs(t, res, "1=A/size-order", "3=C/header+size")
	if !reflect.DeepEqual(res.UnmatchedOld, []int{1, 3}) || !reflect.DeepEqual(res.UnmatchedNew, []uint32{4, 5}) {
		t.Fatalf("unmatched: old %v (want [1 3]), new %v (want [4 5])", res.UnmatchedOld, res.UnmatchedNew)
	}
}

// TestImportHeaderAloneWhenSizesDiffer: a server that counted sizes
// differently (bare LFs) still matches by header, after the exact passes.
func TestImportHeaderAloneWhenSizesDiffer(t *testing.T) {
	f := newFakeImport([]oldMsg{
		{uidl: "A", size: 95, header: hdr("a")},
		{uidl: "B", size: 190, header: hdr("b")},
	}, 0, []newMsg{
		{uid: 1, size: 100, header: hdr("a")},
		{uid: 2, size: 200, header: hdr("b")},
	}, 7)
	wantPairs(t, f.match(t), "1=A/header", "2=B/header")
}

// TestImportByUIDInTheSameMailbox: a dovecot-uidlist of the upstream's own
// maildir names messages by UID; nothing else is needed or tried.
func TestImportByUIDInTheSameMailbox(t *testing.T) {
	old := []oldMsg{
		{uidl: "p1", size: 100, uid: 1},
		{uidl: "p2", size: -1, uid: 2}, // size unknown: the UID decides
		{uidl: "p3", size: 300, uid: 3},
		{uidl: "p4", size: 400, uid: 4}, // expunged since
		{uidl: "p5", size: 555, uid: 5}, // the UID now holds something else?
	}
	cur := []newMsg{{uid: 1, size: 100}, {uid: 2, size: 200}, {uid: 3, size: 300}, {uid: 5, size: 500}, {uid: 6, size: 400}}
	f := newFakeImport(old, 1234, cur, 1234)
	res := f.match(t)
	wantPairs(t, res, "1=p1/uid", "2=p2/uid", "3=p3/uid")
	if !reflect.DeepEqual(res.UnmatchedOld, []int{3, 4}) || !reflect.DeepEqual(res.UnmatchedNew, []uint32{5, 6}) {
		t.Fatalf("unmatched: old %v, new %v", res.UnmatchedOld, res.UnmatchedNew)
	}
	if len(f.oldAsked)+len(f.newAsked) != 0 {
		t.Fatal("headers fetched although the UIDs settled it")
	}

	// Another UIDVALIDITY: the UIDs mean nothing, sizes and headers decide.
	res = newFakeImport(old, 1233, cur, 1234).match(t)
	if res.ByPass[uidmap.MatchUID] != 0 {
		t.Fatalf("matched by UID across UIDVALIDITYs: %v", pairs(res))
	}
}

func TestImportSkipsInvalidAndDuplicateUIDLs(t *testing.T) {
	f := newFakeImport([]oldMsg{
		{uidl: "ok", size: 1},
		{uidl: "has space", size: 2},
		{uidl: "ok", size: 3},
	}, 0, []newMsg{{uid: 1, size: 1}, {uid: 2, size: 2}, {uid: 3, size: 3}}, 5)
	res := f.match(t)
	wantPairs(t, res, "1=ok/size-order")
	if len(res.Skipped) != 2 || res.Skipped[0].Old != 1 || res.Skipped[1].Old != 2 {
		t.Fatalf("skipped %+v", res.Skipped)
	}
}

// countingStore counts the writes that reach the store.
type countingStore struct {
	uidmap.Store
	applies, resets int
}

func (s *countingStore) Apply(ctx context.Context, k uidmap.Key, ch *uidmap.Change) error {
	s.applies++
	return s.Store.Apply(ctx, k, ch)
}

func (s *countingStore) Reset(ctx context.Context, k uidmap.Key) error {
	s.resets++
	return s.Store.Reset(ctx, k)
}

var importKey = uidmap.Key{Upstream: "imap.example:993", User: "bob", Mailbox: "INBOX"}

func threeOld() []oldMsg {
	return []oldMsg{{uidl: "u1", size: 10, header: hdr("1")}, {uidl: "u2", size: 20, header: hdr("2")}, {uidl: "u3", size: 30, header: hdr("3")}}
}

func threeNew() []newMsg {
	return []newMsg{{uid: 1, size: 10, header: hdr("1")}, {uid: 2, size: 20, header: hdr("2")}, {uid: 3, size: 30, header: hdr("3")}, {uid: 4, size: 40, header: hdr("4")}}
}

// TestImportWritesOneApplyAndResolveServesIt: the imported UIDLs are what
// sessions serve, new messages are named by the format, and the
// fingerprints keep the imported UIDLs across a UIDVALIDITY change.
func TestImportWritesOneApplyAndResolveServesIt(t *testing.T) {
	ctx := context.Background()
	store := &countingStore{Store: uidmap.NewMemoryStore()}
	f := newFakeImport(threeOld(), 0, threeNew(), 500)
	im := &uidmap.Importer{Store: store, Key: importKey}
	res, err := im.Run(ctx, f.src, f.dst)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Written || store.applies != 1 || len(res.Matches) != 3 {
		t.Fatalf("written %v, %d applies, %d matches; want one Apply of 3", res.Written, store.applies, len(res.Matches))
	}
	if !reflect.DeepEqual(f.identAsk, []uint32{1, 2, 3}) {
		t.Fatalf("identified %v, want the matched messages only", f.identAsk)
	}
	drop, _ := store.Load(ctx, importKey)
	r2, _ := drop.Find(2)
	if drop.UIDValidity != 500 || len(drop.Records) != 3 || r2.UIDL != "u2" ||
		r2.FP.MessageID == "" || r2.FP.Size != 20 || r2.FP.Date == 0 {
		t.Fatalf("stored %+v", drop)
	}

	m := uidmap.New(store, uidmap.Options{})
	msgs := []uidmap.Message{{UID: 1, Size: 10}, {UID: 2, Size: 20}, {UID: 3, Size: 30}, {UID: 4, Size: 40}}
	v, err := m.Resolve(ctx, importKey, 500, msgs, f.dst.Identify)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"u1", "u2", "u3", "00000004000001f4"}; !reflect.DeepEqual(v.UIDLs, want) {
		t.Fatalf("first session serves %v, want %v", v.UIDLs, want)
	}

	// The upstream renumbers everything (a new UIDVALIDITY, other UIDs).
	renumbered := newFakeImport(nil, 0, []newMsg{
		{uid: 11, size: 10, header: hdr("1")}, {uid: 12, size: 20, header: hdr("2")},
		{uid: 13, size: 30, header: hdr("3")}, {uid: 14, size: 40, header: hdr("4")}}, 501)
	msgs = []uidmap.Message{{UID: 11, Size: 10}, {UID: 12, Size: 20}, {UID: 13, Size: 30}, {UID: 14, Size: 40}}
	v2, err := m.Resolve(ctx, importKey, 501, msgs, renumbered.dst.Identify)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(v2.UIDLs, v.UIDLs) {
		t.Fatalf("after a UIDVALIDITY change %v, before %v: imported UIDLs must survive it", v2.UIDLs, v.UIDLs)
	}
}

func TestImportRefusesExistingStateUnlessForced(t *testing.T) {
	ctx := context.Background()
	store := &countingStore{Store: uidmap.NewMemoryStore()}
	// A session already named the messages: 1 and 2 by the format, 4 hidden,
	// 9 is gone upstream.
	prior := &uidmap.Change{UIDValidity: 500, Put: []uidmap.Record{
		{UID: 1, UIDL: "fmt1"}, {UID: 2, UIDL: "fmt2", Hidden: true}, {UID: 4, UIDL: "fmt4", Hidden: true}, {UID: 9, UIDL: "fmt9"}}}
	if err := store.Store.Apply(ctx, importKey, prior); err != nil {
		t.Fatal(err)
	}
	before, _ := store.Load(ctx, importKey)

	f := newFakeImport(threeOld(), 0, threeNew(), 500)
	im := &uidmap.Importer{Store: store, Key: importKey}
	if n, err := im.Check(ctx); !errors.Is(err, uidmap.ErrStateExists) || n != 4 {
		t.Fatalf("Check: %d, %v; want 4 and ErrStateExists", n, err)
	}
	if _, err := im.Run(ctx, f.src, f.dst); !errors.Is(err, uidmap.ErrStateExists) {
		t.Fatalf("Run over existing state: %v, want ErrStateExists", err)
	}
	if after, _ := store.Load(ctx, importKey); store.applies+store.resets != 0 || !reflect.DeepEqual(after, before) {
		t.Fatal("a refused import changed the store")
	}

	im.Force = true
	res, err := im.Run(ctx, f.src, f.dst)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Replaced || res.Existing != 4 || store.applies != 1 {
		t.Fatalf("forced: replaced %v, existing %d, %d applies", res.Replaced, res.Existing, store.applies)
	}
	after, _ := store.Load(ctx, importKey)
	got := map[uint32]string{}
	for _, r := range after.Records {
		got[r.UID] = fmt.Sprintf("%s hidden=%v", r.UIDL, r.Hidden)
	}
	want := map[uint32]string{
		1: "u1 hidden=false", 2: "u2 hidden=true", 3: "u3 hidden=false",
		4: "fmt4 hidden=true", // unmatched, still present and hidden: kept
		// 9 (gone upstream) is forgotten
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after -force: %v, want %v", got, want)
	}

	// Forced over state of another UIDVALIDITY: all of it goes.
	store2 := uidmap.NewMemoryStore()
	store2.Apply(ctx, importKey, &uidmap.Change{UIDValidity: 499, Put: []uidmap.Record{{UID: 1, UIDL: "x", Hidden: true}}})
	if _, err := (&uidmap.Importer{Store: store2, Key: importKey, Force: true}).Run(ctx, f.src, f.dst); err != nil {
		t.Fatal(err)
	}
	if d, _ := store2.Load(ctx, importKey); d.UIDValidity != 500 || len(d.Records) != 3 || d.Records[0].UID != 1 || d.Records[0].UIDL != "u1" || d.Records[0].Hidden {
		t.Fatalf("after -force over another UIDVALIDITY: %+v", d)
	}
}

func TestImportDryRunWritesNothing(t *testing.T) {
	ctx := context.Background()
	for _, force := range []bool{false, true} {
		store := &countingStore{Store: uidmap.NewMemoryStore()}
		if force {
			store.Store.Apply(ctx, importKey, &uidmap.Change{UIDValidity: 500, Put: []uidmap.Record{{UID: 1, UIDL: "fmt1"}}})
		}
		f := newFakeImport(threeOld(), 0, threeNew(), 500)
		res, err := (&uidmap.Importer{Store: store, Key: importKey, DryRun: true, Force: force}).Run(ctx, f.src, f.dst)
		if err != nil {
			t.Fatal(err)
		}
		if res.Written || store.applies+store.resets != 0 || len(res.Matches) != 3 {
			t.Fatalf("force=%v: written %v, %d writes, %d matches", force, res.Written, store.applies+store.resets, len(res.Matches))
		}
		d, _ := store.Load(ctx, importKey)
		if want := map[bool]int{false: 0, true: 1}[force]; len(d.Records) != want {
			t.Fatalf("force=%v: %d records after a dry run, want %d", force, len(d.Records), want)
		}
	}
}

func TestImportNothingMatchedWritesNothing(t *testing.T) {
	store := &countingStore{Store: uidmap.NewMemoryStore()}
	f := newFakeImport([]oldMsg{{uidl: "zzz", size: 1, header: hdr("z")}}, 0, threeNew(), 500)
	res, err := (&uidmap.Importer{Store: store, Key: importKey}).Run(context.Background(), f.src, f.dst)
	if err != nil {
		t.Fatal(err)
	}
	if res.Written || store.applies != 0 || len(res.UnmatchedNew) != 4 || len(res.UnmatchedOld) != 1 {
		t.Fatalf("%+v, %d applies", res, store.applies)
	}
}
