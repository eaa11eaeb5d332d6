package proxy_test

// The end-to-end tests in front of Cyrus IMAP 3.6 instead of Dovecot
// (internal/testenv/cyrus), and a UIDVALIDITY change of Cyrus's own. Where
// Cyrus differs:
//
//   - UIDVALIDITY is the time the mailbox was created (kept increasing when
//     one is re-created within the same second). Where the Dovecot tests set
//     it with doveadm, the Cyrus test deletes and re-creates the INBOX (the
//     admin's DELETE and CREATE user.NAME) and appends the messages again.
//   - Deleting user.NAME deletes the user's whole hierarchy: Trash with it.
//   - With altnamespace (the harness's setting) other mailboxes are top
//     level, so the trash mailbox is "Trash", as on Dovecot; with Debian's
//     default altnamespace: no it is "INBOX.Trash", as on Courier. MOVE is
//     there.
//   - A wrong password gets NO after 3 s (failedloginpause), within the
//     default command timeout.
//   - A message is stored as sent: without a final CRLF (as on Dovecot, not
//     as on Courier), and with "\r\r\n" where it has one (Dovecot and
//     Courier store "\r\n"): testTop builds its body with LFs, which
//     message() makes CRLFs.

import (
	"reflect"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testenv/cyrus"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/uidmap"
)

func TestCyrusListingMatchesIMAP(t *testing.T) {
	t.Parallel()
	testListingMatchesIMAP(t, startCyrus(t))
}

func TestCyrusRetrIsByteExact(t *testing.T) {
	t.Parallel()
	testRetrIsByteExact(t, startCyrus(t))
}

func TestCyrusTop(t *testing.T) {
	t.Parallel()
	testTop(t, startCyrus(t))
}

func TestCyrusDeleQuitExpungesOnlyDeleted(t *testing.T) {
	t.Parallel()
	testDeleQuitExpungesOnlyDeleted(t, startCyrus(t))
}

func TestCyrusDropDeletesNothing(t *testing.T) {
	t.Parallel()
	testDropDeletesNothing(t, startCyrus(t))
}

func TestCyrusRset(t *testing.T) {
	t.Parallel()
	testRset(t, startCyrus(t))
}

func TestCyrusOnDele(t *testing.T) {
	t.Parallel()
	testOnDele(t, startCyrus(t), "Trash",
		proxy.OnDeleExpunge, proxy.OnDeleTrash, proxy.OnDeleHide, proxy.OnDeleKeep)
}

// TestCyrusOnDeleTrashWithoutAltNamespace: with Debian's default
// altnamespace: no, a user's mailboxes are below INBOX ("INBOX.Trash", as on
// Courier); "Trash" would be user.Trash, a user that does not exist (NO
// without [TRYCREATE]).
func TestCyrusOnDeleTrashWithoutAltNamespace(t *testing.T) {
	t.Parallel()
	up := cyrusServer{cyrus.Start(t, cyrus.WithSetting("altnamespace", "no"))}
	testOnDele(t, up, "INBOX.Trash", proxy.OnDeleTrash)
}

func TestCyrusMarkSeen(t *testing.T) {
	t.Parallel()
	testMarkSeen(t, startCyrus(t))
}

// TestCyrusWrongPassword: Cyrus answers a wrong password with NO after its
// failedloginpause (3 s), after connect_timeout; LOGIN is bounded by
// command_timeout, so the client gets -ERR [AUTH], not [SYS/TEMP].
func TestCyrusWrongPassword(t *testing.T) {
	t.Parallel()
	const connect = 2 * time.Second
	took := testWrongPassword(t, startCyrus(t), withTimeouts(connect, 20*time.Second))
	if took < connect {
		t.Errorf("the wrong password was refused after %v, within connect_timeout %v: the test does not test the bound", took, connect)
	}
}

// TestCyrusRecreatedInboxKeepsUIDLs mirrors TestRecreatedMailboxKeepsUIDLs
// (Dovecot): the INBOX is deleted and re-created (a new UIDVALIDITY) and the
// same messages are appended again, in reverse order (new UIDs, new
// INTERNALDATEs): every message keeps its UIDL, re-identified by its
// fingerprint, and a new message gets a UIDL of the new UIDVALIDITY.
func TestCyrusRecreatedInboxKeepsUIDLs(t *testing.T) {
	t.Parallel()
	up := startCyrus(t)
	b := startBridge(t, up)
	user := newUser(t, up)
	msgs := [][]byte{message("a", "a\r\n"), message("dup", "same\r\n"), message("dup", "same\r\n"),
		[]byte("Subject: no message-id\r\nFrom: x@y\r\n\r\nc\r\n")}
	seed(t, up, user, msgs)
	oldValidity, _ := imapState(t, up, user, "INBOX")
	before := uidls(t, b, user)

	newValidity := up.RecreateInbox(t, user)
	if newValidity == oldValidity {
		t.Fatalf("UIDVALIDITY %d unchanged", newValidity)
	}
	for i := len(msgs) - 1; i >= 0; i-- {
		up.Append(t, user, "INBOX", msgs[i])
	}
	after := uidls(t, b, user)
	if len(after) != len(before) {
		t.Fatalf("after re-creating: %v, before %v", after, before)
	}
	got := map[string]int{}
	for _, u := range after {
		got[u]++
	}
	for _, u := range before {
		if got[u] != 1 {
			t.Fatalf("UIDL %s served %d times after re-creating the INBOX (before %v, after %v)", u, got[u], before, after)
		}
	}
	if reflect.DeepEqual(after, before) {
		t.Log("same UIDLs in the same order")
	}

	uid := up.Append(t, user, "INBOX", message("d", "new\r\n"))
	final := uidls(t, b, user)
	if len(final) != len(msgs)+1 || !reflect.DeepEqual(final[:len(msgs)], after) {
		t.Fatalf("with a new message: %v (before %v)", final, after)
	}
	if want := (uidmap.FormatDovecot{}).UIDL(newValidity, uid, nil); final[len(msgs)] != want {
		t.Errorf("new message UIDL %q, want %q", final[len(msgs)], want)
	}
}
