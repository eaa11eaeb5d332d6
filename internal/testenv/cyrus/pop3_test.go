package cyrus_test

import (
	"fmt"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/testenv"
	"github.com/popbridge/popbridge/internal/testenv/cyrus"
)

// TestCyrusPOP3: WithPOP3 starts Cyrus's own pop3d beside imapd, on the
// same mailboxes; with the default uidl_format (cyrus) a message's UIDL is
// "UIDVALIDITY.UID".
func TestCyrusPOP3(t *testing.T) {
	srv := cyrus.Start(t, cyrus.WithPOP3())
	user := srv.User(t)
	uid := srv.Append(t, user, "INBOX", []byte("From: a@example.org\r\nSubject: one\r\n\r\nbody\r\n"))
	st, err := srv.Client(t, user).Status("INBOX", &imap.StatusOptions{UIDValidity: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}

	list := testenv.POP3Listing(t, srv.POP3Addr, user, srv.Password)
	if want := fmt.Sprintf("%d.%d", st.UIDValidity, uid); len(list) != 1 || list[0].Value != want {
		t.Fatalf("UIDL %+v, want one message %s", list, want)
	}
}
