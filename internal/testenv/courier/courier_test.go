package courier_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/goleak"

	"github.com/popbridge/popbridge/internal/testenv/courier"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestLogin(t *testing.T) {
	t0 := time.Now()
	srv := courier.Start(t, courier.WithPassword("open-sesame"))
	t.Logf("Courier started in %v", time.Since(t0))

	user := srv.User(t)
	sel, err := srv.Client(t, user).Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 0 {
		t.Fatalf("select the new user's INBOX: %v, %+v", err, sel)
	}
	// Users added while Courier runs log in too.
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

// Courier 5.0 (Debian bookworm) answers a UID FETCH of a message that another
// session has expunged with OK and, in place of the message, a synthetic one
// of 129 octets; the EXPUNGE comes only with the next command (here NOOP), and
// a UID FETCH after that returns no data. Observed (CRLF line ends):
//
//	C: a3 UID FETCH 1 (UID BODY.PEEK[])
//	S: * 1 FETCH (UID 1 BODY[] {129}
//	S: From: System Administrator <root@localhost>
//	S: Subject: message unavailable
//	S:
//	S: This message is no longer available on the server.
//	S: )
//	S: a3 OK FETCH completed.
//	C: a4 NOOP
//	S: * 1 EXPUNGE
//	S: * 1 EXISTS
//	S: * 0 RECENT
//	S: a4 OK NOOP completed
//	C: a5 UID FETCH 1 (UID BODY.PEEK[])
//	S: a5 OK FETCH completed.
//
// (RFC822.SIZE in that FETCH says 129 too.) Exception: imapd keeps the file
// of the message it last opened, so when that was the expunged message (here
// after a FETCH of its header) it still serves the real content.
func TestFetchExpungedByOtherSession(t *testing.T) {
	srv := courier.Start(t)
	for _, tc := range []struct {
		name        string
		before      string // first session's command before the expunge; %d is the UID
		placeholder bool
	}{
		{name: "NotOpened", placeholder: true},
		{name: "OpenedLast", before: "UID FETCH %d (BODY.PEEK[HEADER])"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := srv.User(t)
			msg1 := []byte("From: a@example.org\r\nSubject: one\r\n\r\n" + strings.Repeat("first message body\r\n", 8))
			uid1 := srv.Append(t, user, "INBOX", msg1)
			uid2 := srv.Append(t, user, "INBOX", []byte("From: a@example.org\r\nSubject: two\r\n\r\nsecond\r\n"))
			if uid1 == 0 || uid2 != uid1+1 {
				t.Fatalf("UIDs %d, %d", uid1, uid2)
			}

			first := dialRaw(t, srv, user)
			if resp := first.command(t, "SELECT INBOX"); !strings.Contains(resp, "* 2 EXISTS") {
				t.Fatalf("SELECT: %q", resp)
			}
			if tc.before != "" {
				first.command(t, fmt.Sprintf(tc.before, uid1))
			}
			size := expungeElsewhere(t, srv.Client(t, user), uid1)

			fetch := fmt.Sprintf("UID FETCH %d (UID BODY.PEEK[])", uid1)
			resp := first.command(t, fetch)
			t.Logf("%s of the message expunged by the other session:\n%s", fetch, resp)
			if !first.ok(resp) {
				t.Fatalf("UID FETCH did not end in OK: %q", resp)
			}
			m := regexp.MustCompile(`BODY\[\] \{(\d+)\}`).FindStringSubmatch(resp)
			if m == nil {
				t.Fatalf("no BODY[] literal in %q", resp)
			}
			n, _ := strconv.Atoi(m[1])
			if got := n != int(size) || strings.Contains(resp, "message unavailable"); got != tc.placeholder {
				t.Errorf("BODY[] of %d octets (RFC822.SIZE %d): placeholder = %v, want %v", n, size, got, tc.placeholder)
			}
			if strings.Contains(resp, "EXPUNGE") {
				t.Errorf("EXPUNGE already reported with the FETCH: %q", resp)
			}

			if noop := first.command(t, "NOOP"); !strings.Contains(noop, "* 1 EXPUNGE") {
				t.Errorf("NOOP does not report the EXPUNGE: %q", noop)
			}
			if again := first.command(t, fetch); strings.Contains(again, "FETCH (") {
				t.Errorf("UID FETCH after the EXPUNGE returns data: %q", again)
			}
		})
	}
}

// expungeElsewhere returns the RFC822.SIZE of the message and expunges it
// (UID STORE +FLAGS \Deleted, UID EXPUNGE) in the given session.
func expungeElsewhere(t *testing.T, c *imapclient.Client, uid uint32) int64 {
	t.Helper()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	uids := imap.UIDSetNum(imap.UID(uid))
	msgs, err := c.Fetch(uids, &imap.FetchOptions{RFC822Size: true}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("fetch RFC822.SIZE: %v, %+v", err, msgs)
	}
	store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}
	if err := c.Store(uids, store, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.UIDExpunge(uids).Close(); err != nil {
		t.Fatal(err)
	}
	return msgs[0].RFC822Size
}

func TestCapabilities(t *testing.T) {
	caps := courier.Start(t).Capabilities(t)
	t.Logf("post-login CAPABILITY: %s", strings.Join(caps, " "))
	for _, want := range []string{"IMAP4rev1", "UIDPLUS"} {
		if !hasCap(caps, want) {
			t.Errorf("no %s in %v", want, caps)
		}
	}
	if hasCap(caps, "MOVE") {
		t.Errorf("MOVE in %v", caps)
	}

	t.Run("WithSetting", func(t *testing.T) {
		caps := courier.Start(t, courier.WithSetting("IMAP_CAPABILITY", "IMAP4rev1 IDLE")).Capabilities(t)
		if !hasCap(caps, "IMAP4rev1") || hasCap(caps, "UIDPLUS") {
			t.Errorf("IMAP_CAPABILITY=\"IMAP4rev1 IDLE\": %v", caps)
		}
	})
}

func hasCap(caps []string, want string) bool {
	return slices.ContainsFunc(caps, func(c string) bool { return strings.EqualFold(c, want) })
}

// rawConn is a logged-in IMAP connection that shows Courier's responses as sent.
type rawConn struct {
	conn net.Conn
	r    *bufio.Reader
	tag  int
}

func dialRaw(t *testing.T, srv *courier.Server, user string) *rawConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", srv.IMAPAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(time.Minute))
	rc := &rawConn{conn: conn, r: bufio.NewReader(conn)}
	if greeting, err := rc.r.ReadString('\n'); err != nil || !strings.HasPrefix(greeting, "* OK") {
		t.Fatalf("greeting %q: %v", greeting, err)
	}
	if resp := rc.command(t, fmt.Sprintf("LOGIN %s %s", user, srv.Password)); !rc.ok(resp) {
		t.Fatalf("LOGIN: %q", resp)
	}
	return rc
}

var literal = regexp.MustCompile(`\{(\d+)\}\r\n$`)

// command sends a tagged command and returns the whole response, literals
// included, up to and including the tagged status line.
func (rc *rawConn) command(t *testing.T, cmd string) string {
	t.Helper()
	rc.tag++
	tag := fmt.Sprintf("a%d ", rc.tag)
	if _, err := fmt.Fprintf(rc.conn, "%s%s\r\n", tag, cmd); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for {
		line, err := rc.r.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			t.Fatalf("%s: %v after %q", cmd, err, b.String())
		}
		if m := literal.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			buf := make([]byte, n)
			if _, err := io.ReadFull(rc.r, buf); err != nil {
				t.Fatalf("%s: literal: %v", cmd, err)
			}
			b.Write(buf)
			continue
		}
		if strings.HasPrefix(line, tag) {
			return b.String()
		}
	}
}

// ok reports whether the response's tagged status line says OK.
func (rc *rawConn) ok(resp string) bool {
	lines := strings.Split(strings.TrimSuffix(resp, "\r\n"), "\r\n")
	return strings.HasPrefix(lines[len(lines)-1], fmt.Sprintf("a%d OK", rc.tag))
}
