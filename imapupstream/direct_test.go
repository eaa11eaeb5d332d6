package imapupstream

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// TestFetchPassesUnilateral: what the server sends around the answer that
// is not the answer (an EXPUNGE, another message's flags, EXISTS) reaches
// go-imap, in order, once Fetch gives the connection back, so that its view
// of the mailbox stays right; the message streams exactly.
func TestFetchPassesUnilateral(t *testing.T) {
	addr := fetchServer(t, "* 2 EXPUNGE\r\n* 1 FETCH (FLAGS (\\Seen) UID 1)\r\n"+
		"* 1 FETCH (UID 1 BODY[] {5}\r\nhello)\r\n* 5 EXISTS\r\nTAG OK done\r\n", func(fc *fakeConn) {})
	c := fakeLogin(t, fakeDialer(t, addr, 5*time.Second))
	ctx := context.Background()
	if _, err := c.Select(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := c.Fetch(ctx, MessageMeta{UID: 1, Size: 5})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || string(got) != "hello" {
		t.Fatalf("%q, %v", got, err)
	}
	if err := c.begin("NOOP"); err != nil { // go-imap reads again
		t.Fatal(err)
	}
	c.client.Noop().Wait() // the fake answers BAD; what came before is read by then
	if n := c.client.Mailbox().NumMessages; n != 5 {
		t.Fatalf("go-imap counts %d messages, want 5 (3, one EXPUNGE, then EXISTS 5)", n)
	}
}

// TestFetchQuotedBodyRefused: a body sent as a quoted string streams as
// its content; a NO completing the command after the whole body fails the
// reader's last read, so that the client never gets the message as whole.
func TestFetchQuotedBodyRefused(t *testing.T) {
	addr := fetchServer(t, "* 1 FETCH (UID 1 BODY[] \"hi \\\"there\\\"\")\r\nTAG NO [SERVERBUG] oops\r\n", func(fc *fakeConn) {})
	c := fakeLogin(t, fakeDialer(t, addr, 5*time.Second))
	ctx := context.Background()
	if _, err := c.Select(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := c.Fetch(ctx, MessageMeta{UID: 1, Size: 10})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if string(got) != `hi "there"` || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("%q, %v; want the body and ErrUnavailable", got, err)
	}
	if _, err := c.Select(ctx); err != nil {
		t.Fatalf("Conn unusable after a refused FETCH: %v", err)
	}
}
