package pop3_test

import (
	"errors"
	"net"
	"net/textproto"
	"slices"
	"testing"

	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/pop3/pop3mem"
	"go.uber.org/zap/zaptest"
)

// TestMemBackendUpdate runs sessions against pop3mem, a backend that locks
// and really deletes: the maildrop is [IN-USE] while a session has it, only
// QUIT applies DELE, RSET undoes it, and the UIDLs of what is left stay.
func TestMemBackendUpdate(t *testing.T) {
	mem := pop3mem.New()
	alice := mem.AddUser("alice", "secret")
	for _, m := range []string{"Subject: 1\r\n\r\none\r\n", "Subject: 2\r\n\r\ntwo\r\n", "Subject: 3\r\n\r\nthree\r\n"} {
		alice.Append([]byte(m))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &pop3.Server{Backend: mem, Logger: zaptest.NewLogger(t)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, pop3.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})

	dial := func() *textproto.Conn {
		t.Helper()
		c, err := textproto.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.ReadLine(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	// talk sends each command and checks the status line it gets.
	talk := func(c *textproto.Conn, dialog ...string) {
		t.Helper()
		for i := 0; i+1 < len(dialog); i += 2 {
			if err := c.PrintfLine("%s", dialog[i]); err != nil {
				t.Fatal(err)
			}
			if got, err := c.ReadLine(); err != nil || got != dialog[i+1] {
				t.Fatalf("%s: %q, %v; want %q", dialog[i], got, err, dialog[i+1])
			}
		}
	}
	login := []string{"USER alice", "+OK send PASS", "PASS secret"}

	first := dial()
	talk(first, append(login, "+OK maildrop has 3 messages (59 octets)", "DELE 2", "+OK message 2 deleted")...)
	talk(dial(), append(login, "-ERR [IN-USE] maildrop already in use")...)
	talk(first, "QUIT", "+OK bye")

	second := dial()
	talk(second, append(login, "+OK maildrop has 2 messages (40 octets)", "UIDL", "+OK unique-id listing follows")...)
	if uidls, err := second.ReadDotLines(); err != nil || !slices.Equal(uidls, []string{"1 1", "2 3"}) {
		t.Fatalf("UIDL after the UPDATE: %q, %v", uidls, err)
	}
	talk(second, "DELE 1", "+OK message 1 deleted", "RSET", "+OK maildrop has 2 messages (40 octets)", "QUIT", "+OK bye")
	if n := len(alice.Messages()); n != 2 {
		t.Fatalf("%d messages left after DELE, RSET and QUIT; want 2", n)
	}
}
