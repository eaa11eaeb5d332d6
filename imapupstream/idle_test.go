package imapupstream

import (
	"context"
	"testing"
	"time"
)

// An upstream connection stays usable however long the POP3 client waits
// between commands (RFC 1939 allows 10 minutes): go-imap arms a 30-second
// read deadline while it waits for the next response, even with no command
// in flight.
func TestIdleUpstreamSurvivesLongPause(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	uid := e.append(t, msg("after a pause", "x"))
	c, _ := e.open(t, e.config(), nil)
	time.Sleep(35 * time.Second)
	if _, err := c.Snapshot(context.Background()); err != nil {
		t.Fatalf("Snapshot after 35 s idle: %v", err)
	}
	if data, err := e.fetchAll(t, c, uid); err != nil || string(data) != msg("after a pause", "x") {
		t.Fatalf("Fetch after 35 s idle: %q %v", data, err)
	}
}
