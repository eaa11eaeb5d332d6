package imapupstream

import (
	"context"
	"fmt"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// Another client adds mail or changes flags while our session is selected:
// Dovecot tells us along with the snapshot's answer (EXISTS; FLAGS in FETCH
// answers). The snapshot is still exact, and go-imap still follows the
// mailbox. An EXISTS passes the lean path through to go-imap; a FETCH of
// another shape makes it take the snapshot again with go-imap's decoder.
func TestSnapshotWithConcurrentChanges(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		flag      bool
		snapshots int
		listed    int // Dovecot lists the new message only once it synced: after the first FETCH
	}{
		{"new mail", false, 1, 6},
		{"flags", true, 2, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			var uids []uint32
			for i := range 6 {
				uids = append(uids, e.append(t, msg(fmt.Sprint("m", i), "body")))
			}
			trace := &wire{}
			c, _ := e.open(t, e.config(), trace)
			other := e.other(t)
			if tc.flag {
				if err := other.Store(imap.UIDSetNum(imap.UID(uids[1]), imap.UID(uids[4])), &imap.StoreFlags{
					Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
					t.Fatal(err)
				}
			}
			uids = append(uids, e.append(t, msg("m6", "body")))
			got, err := c.Snapshot(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			want := uids[:tc.listed]
			if len(got) != len(want) {
				t.Fatalf("snapshot %v, want UIDs %v", got, want)
			}
			for i, m := range got {
				if m.UID != want[i] || m.Size <= 0 {
					t.Fatalf("snapshot %v, want UIDs %v with sizes", got, want)
				}
			}
			if n := trace.countCommands("UID FETCH 1:* (UID RFC822.SIZE)"); n != tc.snapshots {
				t.Fatalf("%d snapshot commands, want %d", n, tc.snapshots)
			}
			// The connection goes on, and go-imap saw the EXISTS.
			if data, err := e.fetchAll(t, c, uids[5]); err != nil || string(data) != msg("m5", "body") {
				t.Fatalf("Fetch after: %q %v", data, err)
			}
			if n := c.client.Mailbox().NumMessages; n != 7 {
				t.Fatalf("go-imap counts %d messages, want 7", n)
			}
		})
	}
}
