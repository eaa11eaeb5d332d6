package testenv

import (
	"testing"

	"github.com/popbridge/popbridge/pop3/pop3client"
)

// POP3Session logs in to the POP3 server at addr as user, runs fn on the
// session and QUITs: what tests that read a listing from a POP3 server
// (popbridge, or another server's own pop3d) do.
func POP3Session(t testing.TB, addr, user, password string, fn func(c *pop3client.Client)) {
	t.Helper()
	c, err := pop3client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(user, password); err != nil {
		t.Fatalf("POP3 login %s on %s: %v", user, addr, err)
	}
	fn(c)
	if err := c.Quit(); err != nil {
		t.Fatalf("POP3 QUIT on %s: %v", addr, err)
	}
}

// POP3Listing returns the UIDL listing of user's maildrop at addr.
func POP3Listing(t testing.TB, addr, user, password string) []pop3client.Entry {
	t.Helper()
	var list []pop3client.Entry
	POP3Session(t, addr, user, password, func(c *pop3client.Client) {
		var err error
		if list, err = c.Listing("UIDL"); err != nil {
			t.Fatalf("UIDL on %s: %v", addr, err)
		}
	})
	return list
}
