package courier_test

import (
	"fmt"
	"regexp"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/testenv"
	"github.com/popbridge/popbridge/internal/testenv/courier"
)

// TestCourierPOP3: WithPOP3 starts Courier's own pop3d beside imapd, on the
// same maildirs. Its UIDLs are "UID<n>-<uidv>" from courierpop3dsizelist,
// its own numbering (see uidmap's errCourier), which the test only logs
// next to the IMAP UIDs.
func TestCourierPOP3(t *testing.T) {
	srv := courier.Start(t, courier.WithPOP3())
	user := srv.User(t)
	var uids []uint32
	for i := range 2 {
		uids = append(uids, srv.Append(t, user, "INBOX", []byte(fmt.Sprintf("From: a@example.org\r\nSubject: %d\r\n\r\nbody\r\n", i))))
	}
	st, err := srv.Client(t, user).Status("INBOX", &imap.StatusOptions{UIDValidity: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}

	list := testenv.POP3Listing(t, srv.POP3Addr, user, srv.Password)
	if len(list) != 2 {
		t.Fatalf("UIDL %+v, want 2 messages", list)
	}
	shape := regexp.MustCompile(`^UID[0-9]+-[0-9]+$`)
	for i, e := range list {
		if !shape.MatchString(e.Value) {
			t.Errorf("UIDL %q, want UID<n>-<uidv>", e.Value)
		}
		t.Logf("message %d: pop3d UIDL %s, IMAP UID %d UIDVALIDITY %d", e.N, e.Value, uids[i], st.UIDValidity)
	}
}
