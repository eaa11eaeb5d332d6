package proxy_test

// The end-to-end tests in front of Courier IMAP 5.0 instead of Dovecot
// (internal/testenv/courier), and two regressions of Courier's own. Where
// Courier differs:
//
//   - Its mailboxes are in the namespace "INBOX." (separator "."): "Trash"
//     is an invalid name (COPY: NO without [TRYCREATE], CREATE: "Invalid
//     mailbox name"), so the trash mailbox is "INBOX.Trash", which the
//     bridge creates on COPY's NO [TRYCREATE].
//   - No MOVE: on_dele trash is UID COPY, then \Deleted and UID EXPUNGE.
//   - A message without a final CRLF gets one: BODY[] and RFC822.SIZE both
//     count it, and the tests compare with what Courier serves.
//   - A UID FETCH of a message another client expunged answers OK with a
//     129-octet stand-in until a NOOP reports the EXPUNGE.
//   - A wrong password gets NO only after about 5 s.

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/pop3/pop3client"
	"github.com/popbridge/popbridge/proxy"
)

func TestCourierListingMatchesIMAP(t *testing.T) {
	t.Parallel()
	testListingMatchesIMAP(t, startCourier(t))
}

func TestCourierRetrIsByteExact(t *testing.T) {
	t.Parallel()
	testRetrIsByteExact(t, startCourier(t))
}

func TestCourierTop(t *testing.T) {
	t.Parallel()
	testTop(t, startCourier(t))
}

func TestCourierDeleQuitExpungesOnlyDeleted(t *testing.T) {
	t.Parallel()
	testDeleQuitExpungesOnlyDeleted(t, startCourier(t))
}

func TestCourierDropDeletesNothing(t *testing.T) {
	t.Parallel()
	testDropDeletesNothing(t, startCourier(t))
}

func TestCourierRset(t *testing.T) {
	t.Parallel()
	testRset(t, startCourier(t))
}

func TestCourierOnDele(t *testing.T) {
	t.Parallel()
	testOnDele(t, startCourier(t), "INBOX.Trash",
		proxy.OnDeleExpunge, proxy.OnDeleTrash, proxy.OnDeleHide, proxy.OnDeleKeep)
}

func TestCourierMarkSeen(t *testing.T) {
	t.Parallel()
	testMarkSeen(t, startCourier(t))
}

// TestCourierWrongPassword: Courier's NO to a wrong password comes after
// connect_timeout; LOGIN is bounded by command_timeout, so the client gets
// -ERR [AUTH], not [SYS/TEMP].
func TestCourierWrongPassword(t *testing.T) {
	t.Parallel()
	const connect = 2 * time.Second
	took := testWrongPassword(t, startCourier(t), withTimeouts(connect, 20*time.Second))
	if took < connect {
		t.Errorf("the wrong password was refused after %v, within connect_timeout %v: the test does not test the bound", took, connect)
	}
}

// courierStandInSize is the size of what Courier serves in place of a
// message another session expunged.
const courierStandInSize = 129

// TestCourierExpungedDuringSession: another client expunges message 1 while
// a POP3 session has it listed. Courier answers the bridge's UID FETCH with
// OK and its stand-in; the client must get -ERR and none of its octets, and
// the session goes on. When the session TOPped the message before the
// expunge, Courier still has its file open and serves it whole: the client
// may then get it, but exactly as it was.
func TestCourierExpungedDuringSession(t *testing.T) {
	t.Parallel()
	up := startCourier(t)
	b := startBridge(t, up)
	for _, topFirst := range []bool{false, true} {
		t.Run(fmt.Sprint("topped_first=", topFirst), func(t *testing.T) {
			user := newUser(t, up)
			seed(t, up, user, [][]byte{message("a", strings.Repeat("first message\r\n", 8)), message("b", "b\r\n"), message("c", "c\r\n")})
			_, before := imapState(t, up, user, "INBOX")
			if before[0].Size == courierStandInSize {
				t.Fatalf("message 1 has the stand-in's size %d: its RETR would not tell them apart", courierStandInSize)
			}
			header, _, _ := bytes.Cut(before[0].Body, []byte("\r\n\r\n"))
			header = append(header, "\r\n\r\n"...)

			c := b.login(t, user)
			if list, err := c.Listing("LIST"); err != nil || len(list) != 3 {
				t.Fatalf("LIST: %+v, %v", list, err)
			}
			if topFirst {
				if got, err := c.Top(1, 0); err != nil || !bytes.Equal(got, header) {
					t.Fatalf("TOP 1 0 before the expunge: %q, %v", got, err)
				}
			}
			expungeElsewhere(t, up, user, before[0].UID)

			got, err := c.Retr(1)
			switch {
			case err == nil && topFirst && bytes.Equal(got, wantRETR(before[0].Body)):
				t.Log("RETR 1: +OK with the message as it was (Courier had its file open)")
			case err == nil:
				t.Fatalf("RETR 1 of the expunged message: +OK with %d octets %q, want -ERR", len(got), got)
			case !isNoSuchMessage(err):
				t.Fatalf("RETR 1 of the expunged message: %v, want -ERR %s", err, pop3.ErrNoSuchMessage.Message)
			}
			got, err = c.Top(1, 0)
			switch {
			case err == nil && topFirst && bytes.Equal(got, header):
				t.Log("TOP 1 0: +OK with the header as it was")
			case err == nil:
				t.Fatalf("TOP 1 0 of the expunged message: +OK with %q, want -ERR", got)
			case !isNoSuchMessage(err):
				t.Fatalf("TOP 1 0 of the expunged message: %v, want -ERR %s", err, pop3.ErrNoSuchMessage.Message)
			}
			for _, n := range []int{2, 3} {
				if got, err := c.Retr(n); err != nil || !bytes.Equal(got, wantRETR(before[n-1].Body)) {
					t.Fatalf("RETR %d after another client's expunge: %q, %v", n, got, err)
				}
			}
			if err := c.Quit(); err != nil {
				t.Fatal(err)
			}
			_, after := imapState(t, up, user, "INBOX")
			if got, want := uidsOf(after), []uint32{before[1].UID, before[2].UID}; !slices.Equal(got, want) {
				t.Fatalf("after QUIT upstream has UIDs %v, want %v", got, want)
			}
		})
	}
}

// expungeElsewhere removes the message from the user's INBOX in another
// IMAP session (UID STORE +FLAGS.SILENT \Deleted, UID EXPUNGE).
func expungeElsewhere(t *testing.T, up upstream, user string, uid uint32) {
	t.Helper()
	c := up.Client(t, user)
	defer c.Close()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	set := imap.UIDSetNum(imap.UID(uid))
	if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.UIDExpunge(set).Close(); err != nil {
		t.Fatal(err)
	}
}

// isNoSuchMessage reports whether err is the -ERR for a message that no
// longer exists.
func isNoSuchMessage(err error) bool {
	var e *pop3client.ErrResponse
	return errors.As(err, &e) && strings.Contains(e.Line, pop3.ErrNoSuchMessage.Message)
}

// TestCourierTrashByPlainName: with trash_mailbox "Trash", which Courier
// refuses as a name (its mailboxes live under "INBOX."), the DELEted message
// goes to INBOX.Trash: the name is taken in the server's personal namespace.
func TestCourierTrashByPlainName(t *testing.T) {
	t.Parallel()
	up := startCourier(t)
	p := defaultPolicy()
	p.OnDele, p.TrashMailbox = proxy.OnDeleTrash, "Trash"
	b := startBridge(t, up, withPolicy(p))
	user := newUser(t, up)
	seed(t, up, user, [][]byte{message("a", "a\r\n"), message("b", "b\r\n")})
	_, before := imapState(t, up, user, "INBOX")
	c := b.login(t, user)
	if _, err := c.Cmd("DELE 1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatalf("QUIT with trash_mailbox Trash on Courier: %v", err)
	}
	if _, inbox := imapState(t, up, user, "INBOX"); len(inbox) != 1 || inbox[0].UID != before[1].UID {
		t.Fatalf("INBOX after trash: %+v", inbox)
	}
	if _, trashed := imapState(t, up, user, "INBOX.Trash"); len(trashed) != 1 || !bytes.Equal(trashed[0].Body, before[0].Body) {
		t.Fatalf("INBOX.Trash holds %d messages, want the DELEted one", len(trashed))
	}
}
