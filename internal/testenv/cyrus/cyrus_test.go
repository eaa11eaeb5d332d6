package cyrus_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/goleak"

	"github.com/popbridge/popbridge/internal/testenv/cyrus"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestCyrusLogin(t *testing.T) {
	t0 := time.Now()
	srv := cyrus.Start(t, cyrus.WithPassword("open-sesame"))
	t.Logf("Cyrus started in %v", time.Since(t0))

	user := srv.User(t)
	sel, err := srv.Client(t, user).Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 0 {
		t.Fatalf("select the new user's INBOX: %v, %+v", err, sel)
	}
	// Users added while Cyrus runs log in too.
	srv.Client(t, srv.User(t))

	bad, err := imapclient.DialInsecure(srv.IMAPAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	t0 = time.Now()
	err = bad.Login(user, "wrong").Wait()
	var imapErr *imap.Error
	if !errors.As(err, &imapErr) || imapErr.Type != imap.StatusResponseTypeNo {
		t.Fatalf("login with a wrong password: %v, want NO", err)
	}
	t.Logf("a wrong password got NO %q after %v", imapErr.Text, time.Since(t0))
}

func TestCyrusCapabilities(t *testing.T) {
	caps := cyrus.Start(t).Capabilities(t)
	t.Logf("post-login CAPABILITY: %s", strings.Join(caps, " "))
	for _, want := range []string{"IMAP4rev1", "UIDPLUS", "MOVE", "ID", "CONDSTORE", "QRESYNC", "OBJECTID", "LITERAL+", "NAMESPACE"} {
		if !hasCap(caps, want) {
			t.Errorf("no %s in %v", want, caps)
		}
	}

	t.Run("WithSetting", func(t *testing.T) {
		caps := cyrus.Start(t, cyrus.WithSetting("suppress_capabilities", "MOVE")).Capabilities(t)
		if !hasCap(caps, "UIDPLUS") || hasCap(caps, "MOVE") {
			t.Errorf("suppress_capabilities: MOVE: %v", caps)
		}
	})
}

func hasCap(caps []string, want string) bool {
	return slices.ContainsFunc(caps, func(c string) bool { return strings.EqualFold(c, want) })
}

// TestCyrusRecreateInbox: deleting and re-creating the INBOX gives it a new
// UIDVALIDITY, and UIDs start again at 1.
func TestCyrusRecreateInbox(t *testing.T) {
	srv := cyrus.Start(t)
	user := srv.User(t)
	msg := []byte("From: a@example.org\r\nSubject: one\r\n\r\nbody\r\n")
	srv.Append(t, user, "INBOX", msg)
	if uid := srv.Append(t, user, "INBOX", msg, imap.FlagSeen); uid != 2 {
		t.Fatalf("second APPENDUID %d, want 2", uid)
	}
	st, err := srv.Client(t, user).Status("INBOX", &imap.StatusOptions{UIDValidity: true, NumMessages: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // twice within a second: still a new one each time
		v := srv.RecreateInbox(t, user)
		if v == st.UIDValidity {
			t.Fatalf("UIDVALIDITY %d unchanged", v)
		}
		c := srv.Client(t, user)
		sel, err := c.Select("INBOX", nil).Wait()
		if err != nil || sel.NumMessages != 0 || sel.UIDValidity != v {
			t.Fatalf("select the re-created INBOX: %v, %+v, want UIDVALIDITY %d", err, sel, v)
		}
		c.Close()
		t.Logf("UIDVALIDITY %d -> %d", st.UIDValidity, v)
		st.UIDValidity = v
	}
	if uid := srv.Append(t, user, "INBOX", msg); uid != 1 {
		t.Errorf("APPENDUID %d in the re-created INBOX, want 1", uid)
	}
}

// TestCyrusAppendFlagsAndCRLF: APPEND's flags are set, and a message is stored
// as sent: without a final CRLF (Courier adds one) and with a CR before a
// CRLF ("\r\r\n", which Dovecot and Courier store as "\r\n").
func TestCyrusAppendFlagsAndCRLF(t *testing.T) {
	srv := cyrus.Start(t)
	user := srv.User(t)
	msg := []byte("From: a@example.org\r\nSubject: no final CRLF\r\n\r\nline 1\r\r\nbody")
	uid := srv.Append(t, user, "INBOX", msg, imap.FlagSeen, "$Custom")
	c := srv.Client(t, user)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.UIDSetNum(imap.UID(uid)), &imap.FetchOptions{
		Flags: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("fetch: %v, %+v", err, msgs)
	}
	m := msgs[0]
	if !slices.Contains(m.Flags, imap.FlagSeen) || !slices.Contains(m.Flags, imap.Flag("$Custom")) {
		t.Errorf("flags %v", m.Flags)
	}
	var body []byte
	for _, b := range m.BodySection {
		body = b.Bytes
	}
	if string(body) != string(msg) || m.RFC822Size != int64(len(msg)) {
		t.Errorf("BODY[] %q (RFC822.SIZE %d), want %q (%d)", body, m.RFC822Size, msg, len(msg))
	}
}
