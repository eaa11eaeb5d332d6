package proxy_test

import (
	"io"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/faultrelay"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
)

// TestFaultClientVanishesMidRetrKeepsSeen: with policy.mark_seen, a client
// that RETRs message 1 whole, starts RETR 2 and drops its TCP connection in
// the middle of it still has message 1 marked \Seen upstream once the
// session is over, as Dovecot's own POP3 does for a session that ends
// without QUIT. Message 2, which it never got whole, is not \Seen, and
// nothing is expunged. Message 2 is big (not fetched ahead) in one case and
// small enough to be fetched ahead during RETR 1 in the other.
func TestFaultClientVanishesMidRetrKeepsSeen(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
	}{
		{"streamed", 3 << 20},
		{"fetched ahead", 900 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, r := relayedBridge(t, nil) // defaultPolicy: mark_seen on, on_dele expunge
			user := dovecot.User(t)
			seed(t, b.DV, user, [][]byte{message("small", "hi\r\n"), bigMessage("big", tc.size), message("third", "3\r\n")})
			_, before := imapState(t, b.DV, user, "INBOX")
			// A slow upstream: message 2 is still on its way when the client leaves.
			r.SetRate(faultrelay.ServerToClient, 1<<20)

			c := b.dial(t)
			if err := c.Login(user, b.DV.Password); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Retr(1); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Cmd("RETR 2"); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c.DotReader(), make([]byte, 16<<10)); err != nil {
				t.Fatal(err)
			}
			c.Close()
			waitRelayIdle(t, r, 10*time.Second)
			r.SetRate(faultrelay.ServerToClient, 0)

			_, after := imapState(t, b.DV, user, "INBOX")
			if len(after) != len(before) {
				t.Fatalf("%d messages upstream after the session, %d before", len(after), len(before))
			}
			if !hasFlag(after[0], imap.FlagSeen) {
				t.Errorf("message 1, RETRieved whole, is not \\Seen upstream: %q", flagString(after[0]))
			}
			checkUntouched(t, before, after, before[0].UID) // message 2 (cut off) and 3 unchanged
		})
	}
}
