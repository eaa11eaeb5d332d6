package imapupstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

func TestSnapshot(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var uids []uint32
	for i := range 5 {
		uids = append(uids, e.append(t, msg(fmt.Sprint("snap ", i), strings.Repeat("y", i*100))))
	}
	// Sizes as another client sees them.
	want := map[uint32]int64{}
	sizes, err := e.other(t).Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}},
		&imap.FetchOptions{UID: true, RFC822Size: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range sizes {
		want[uint32(m.UID)] = m.RFC822Size
	}

	trace := &wire{}
	c, _ := e.open(t, e.config(), trace)
	got, err := c.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(uids) {
		t.Fatalf("snapshot %v, appended %v", got, uids)
	}
	for i, m := range got {
		if m.UID != uids[i] || m.Size != want[m.UID] || m.Size <= 0 {
			t.Fatalf("snapshot[%d] = %+v, want UID %d size %d", i, m, uids[i], want[m.UID])
		}
	}
	if n := trace.countCommands("UID FETCH 1:* (UID RFC822.SIZE)"); n != 1 {
		t.Fatalf("snapshot commands %q", trace.commands())
	}
}

func TestSnapshotEmpty(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	trace := &wire{}
	c, mb := e.open(t, e.config(), trace)
	if mb.NumMessages != 0 {
		t.Fatal(mb)
	}
	got, err := c.Snapshot(context.Background())
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("got %v, %v; want an empty slice", got, err)
	}
	if n := trace.countCommands("UID FETCH"); n != 0 {
		t.Fatalf("FETCH sent for an empty mailbox: %q", trace.commands())
	}
}

// Large mailboxes: one round trip, decoded as it streams.
func TestSnapshotLarge(t *testing.T) {
	n := 50000
	if testing.Short() {
		n = 5000
	}
	e := newEnv(t)
	e.srv.FillMaildir(t, e.user, n, func(i int) []byte {
		return []byte(fmt.Sprintf("Subject: m%d\r\nMessage-ID: <%d@x>\r\n\r\n%s\r\n", i, i, strings.Repeat("z", i%300)))
	})
	c, mb := e.open(t, e.config(), nil) // Dovecot indexes the maildir here
	if int(mb.NumMessages) != n {
		t.Fatalf("%d messages", mb.NumMessages)
	}
	var got []MessageMeta
	for round := range 2 { // the second time Dovecot has the sizes cached
		start := time.Now()
		var err error
		got, err = c.Snapshot(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		t.Logf("snapshot %d of %d messages took %v", round+1, n, took)
		if round == 1 && took > 10*time.Second {
			t.Fatalf("too slow: %v (one round trip per message?)", took)
		}
	}
	if len(got) != n {
		t.Fatalf("%d entries", len(got))
	}
	var total int64
	for i, m := range got {
		if i > 0 && m.UID <= got[i-1].UID {
			t.Fatalf("not sorted at %d", i)
		}
		total += m.Size
	}
	if total == 0 {
		t.Fatal("no sizes")
	}
}

func (e *env) fetchAll(t *testing.T, c *Conn, uid uint32) ([]byte, error) {
	t.Helper()
	r, err := c.Fetch(context.Background(), e.meta(uid))
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(r)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	return data, err
}

func TestFetchExactBytes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var big strings.Builder
	big.WriteString("Subject: big\r\nContent-Type: text/plain\r\n\r\n")
	for i := 0; big.Len() < 5<<20; i++ {
		fmt.Fprintf(&big, "%08d %s\r\n", i, strings.Repeat("abcdefghij", 7))
	}
	cases := map[string]string{
		"simple":          msg("simple", "Hello", "World"),
		"5MB":             big.String(),
		"no final CRLF":   "Subject: nocrlf\r\n\r\nbody without a line end",
		"8-bit UTF-8":     "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße, 日本語, ✓\r\n",
		"dot lines":       "Subject: dots\r\n\r\nbefore\r\n.\r\n..\r\n.hidden\r\nafter\r\n.\r\n",
		"header only":     "Subject: header only\r\n\r\n",
		"empty body line": "Subject: x\r\n\r\n\r\n",
	}
	uids := map[string]uint32{}
	for name, m := range cases {
		uids[name] = e.append(t, m)
	}
	c, _ := e.open(t, e.config(), nil)
	snap, err := c.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[uint32]int64{}
	for _, m := range snap {
		sizes[m.UID] = m.Size
	}
	for name, want := range cases {
		got, err := e.fetchAll(t, c, uids[name])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got, []byte(want)) {
			t.Fatalf("%s: fetched %d bytes, appended %d; differ", name, len(got), len(want))
		}
		if int64(len(got)) != sizes[uids[name]] {
			t.Fatalf("%s: %d bytes, RFC822.SIZE %d", name, len(got), sizes[uids[name]])
		}
	}

	// Fetch never sets \Seen.
	for uid, flags := range e.state(t, "INBOX") {
		if hasFlag(flags, imap.FlagSeen) {
			t.Fatalf("UID %d got \\Seen from Fetch", uid)
		}
	}
}

func TestFetchSmallReadsAndEarlyClose(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := strings.Repeat("0123456789abcdef\r\n", 10000)
	uid1 := e.append(t, "Subject: a\r\n\r\n"+body)
	uid2 := e.append(t, msg("b", "second"))
	trace := &wire{}
	c, _ := e.open(t, e.config(), trace)

	// Tiny reads.
	r, err := c.Fetch(context.Background(), e.meta(uid2))
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	buf := make([]byte, 3)
	for {
		n, err := r.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if got.String() != msg("b", "second") {
		t.Fatalf("got %q", got.String())
	}
	r.Close()

	// Close after reading a little drains the rest; the Conn goes on.
	r, err = c.Fetch(context.Background(), e.meta(uid1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	// An open reader is closed by the next operation.
	r, err = c.Fetch(context.Background(), e.meta(uid1))
	if err != nil {
		t.Fatal(err)
	}
	r.Read(make([]byte, 10))
	if data, err := e.fetchAll(t, c, uid2); err != nil || string(data) != msg("b", "second") {
		t.Fatalf("fetch after abandoned reader: %q %v", data, err)
	}
	if trace.countCommands("UID FETCH "+fmt.Sprint(uid1)+" (UID BODY.PEEK[])") != 2 {
		t.Fatalf("commands %q", trace.commands())
	}
	for _, cmd := range trace.commands() {
		if strings.Contains(cmd, "BODY[") || strings.Contains(cmd, "RFC822)") || strings.Contains(cmd, "RFC822 ") {
			t.Fatalf("fetch without PEEK: %s", cmd)
		}
	}

	// Close of the Conn with a reader open does not hang.
	r, err = c.Fetch(context.Background(), e.meta(uid1))
	if err != nil {
		t.Fatal(err)
	}
	r.Read(make([]byte, 10))
	done := make(chan struct{})
	go func() { c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs with a reader open")
	}
	if _, err := r.Read(make([]byte, 10)); err == nil || err == io.EOF {
		t.Fatalf("Read after Conn.Close: %v", err)
	}
}

func TestFetchExpungedMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	uid1 := e.append(t, msg("gone", "x"))
	uid2 := e.append(t, msg("stays", "y"))
	c, _ := e.open(t, e.config(), nil)
	if _, err := c.Snapshot(context.Background()); err != nil {
		t.Fatal(err)
	}

	// Another client expunges uid1 during our session.
	other := e.other(t)
	if err := other.Store(imap.UIDSetNum(imap.UID(uid1)), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := other.UIDExpunge(imap.UIDSetNum(imap.UID(uid1))).Close(); err != nil {
		t.Fatal(err)
	}

	if _, err := c.Fetch(context.Background(), e.meta(uid1)); !errors.Is(err, ErrNoSuchMessage) {
		t.Fatalf("Fetch of an expunged message: %v", err)
	}
	if _, err := c.Top(context.Background(), e.meta(uid1), 3); !errors.Is(err, ErrNoSuchMessage) {
		t.Fatalf("Top of an expunged message: %v", err)
	}
	if _, err := c.Fetch(context.Background(), e.meta(999999)); !errors.Is(err, ErrNoSuchMessage) {
		t.Fatalf("Fetch of a UID that never was: %v", err)
	}
	// The connection goes on.
	if data, err := e.fetchAll(t, c, uid2); err != nil || string(data) != msg("stays", "y") {
		t.Fatalf("next Fetch: %q %v", data, err)
	}
}

func TestMarkSeen(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var uids []uint32
	for i := range 4 {
		uids = append(uids, e.append(t, msg(fmt.Sprint("seen ", i), "x")))
	}
	c, _ := e.open(t, e.config(), nil)
	if err := c.MarkSeen(context.Background(), []uint32{uids[0], uids[2], uids[2]}); err != nil {
		t.Fatal(err)
	}
	if err := c.MarkSeen(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	st := e.state(t, "INBOX")
	for i, uid := range uids {
		if want := i == 0 || i == 2; hasFlag(st[uid], imap.FlagSeen) != want {
			t.Fatalf("UID %d flags %v", uid, st[uid])
		}
	}
}

func TestUIDSets(t *testing.T) {
	if got := fmt.Sprint(uidSets([]uint32{1, 2, 3, 5, 7, 8})); got != "[1:3,5,7:8]" {
		t.Fatal(got)
	}
	var many []uint32
	for i := uint32(1); i < 20000; i += 2 {
		many = append(many, i)
	}
	sets := uidSets(many)
	if len(sets) < 2 {
		t.Fatalf("%d sets", len(sets))
	}
	total := 0
	for _, s := range sets {
		if len(s.String()) > maxUIDSetLen {
			t.Fatalf("set too long: %d", len(s.String()))
		}
		nums, _ := s.Nums()
		total += len(nums)
	}
	if total != len(many) {
		t.Fatalf("%d of %d UIDs", total, len(many))
	}
	if got := sortUIDs([]uint32{5, 0, 3, 5, 1}); fmt.Sprint(got) != "[1 3 5]" {
		t.Fatal(got)
	}
}
