package imapupstream

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// gmailFake is a scripted Gmail: it advertises X-GM-EXT-1 after login
// (unless plain), answers Identify's fetch for UIDs 1-3 (all with a
// Message-ID), and the X-GM-MSGID fetch with items in Gmail's order, an
// unsolicited EXISTS in between, and for UID 3 a stand-in size. It records
// the X-GM-MSGID fetches it was sent.
type gmailFake struct {
	plain bool
	mu    sync.Mutex
	asked []string
}

func (g *gmailFake) handle(fc *fakeConn) {
	caps := "IMAP4rev1 UIDPLUS MOVE X-GM-EXT-1"
	if g.plain {
		caps = "IMAP4rev1 UIDPLUS MOVE"
	}
	const date = `"07-Dec-2026 10:00:00 +0000"`
	fc.send(fakeGreeting)
	fc.serve(func(tag, cmd, line string) bool {
		switch {
		case cmd == "LOGIN":
			fc.send(tag + " OK [CAPABILITY " + caps + "] logged in\r\n")
		case cmd == "UID FETCH" && strings.Contains(line, "X-GM-MSGID"):
			g.mu.Lock()
			g.asked = append(g.asked, line[len(tag)+1:])
			g.mu.Unlock()
			fc.send("* 1 FETCH (X-GM-MSGID 1363378113778197832 UID 1 RFC822.SIZE 100)\r\n" +
				"* 4 EXISTS\r\n" +
				"* 2 FETCH (X-GM-MSGID 1278455344230334865 UID 2 RFC822.SIZE 200)\r\n" +
				"* 3 FETCH (X-GM-MSGID 42 UID 3 RFC822.SIZE 129)\r\n" +
				tag + " OK Success\r\n")
		case cmd == "UID FETCH" && strings.Contains(line, "HEADER.FIELDS"):
			for uid, size := range map[int]int{1: 100, 2: 200, 3: 300} {
				fld := "Message-ID: <" + strconv.Itoa(uid) + "@example>\r\n\r\n"
				fc.send("* " + strconv.Itoa(uid) + " FETCH (UID " + strconv.Itoa(uid) + " RFC822.SIZE " + strconv.Itoa(size) +
					" INTERNALDATE " + date + " BODY[HEADER.FIELDS (MESSAGE-ID X-UIDL)] {" + strconv.Itoa(len(fld)) + "}\r\n" + fld + ")\r\n")
			}
			fc.send(tag + " OK Success\r\n")
		default:
			return false
		}
		return true
	})
}

func (g *gmailFake) fetches() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.asked...)
}

var gmailListed = []MessageMeta{{UID: 1, Size: 100}, {UID: 2, Size: 200}, {UID: 3, Size: 300}}

// TestIdentifyGmailMsgID: asked for it, IdentifyWith fetches X-GM-MSGID
// from a server with X-GM-EXT-1, below go-imap (which cannot decode it),
// skips a stand-in's answer as Identify does, and leaves the connection
// usable. This is a scripted server, not Gmail: no real Gmail is reachable
// from the tests.
func TestIdentifyGmailMsgID(t *testing.T) {
	g := &gmailFake{}
	c := fakeLogin(t, fakeDialer(t, newFake(t, g.handle), 5*time.Second))
	ctx := context.Background()
	if _, err := c.Select(ctx); err != nil {
		t.Fatal(err)
	}
	if !c.Caps().Has(CapGmail) {
		t.Fatalf("caps %+v", c.Caps())
	}
	ids, err := c.IdentifyWith(ctx, gmailListed, IdentifyOptions{GmailMsgID: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint32]uint64{1: 1363378113778197832, 2: 1278455344230334865, 3: 0} // 3: a stand-in's size
	if len(ids) != 3 {
		t.Fatalf("IdentifyWith = %+v", ids)
	}
	for _, id := range ids {
		if id.GmailMsgID != want[id.UID] || id.MessageID != "<"+strconv.Itoa(int(id.UID))+"@example>" {
			t.Errorf("UID %d: X-GM-MSGID %d, Message-ID %q; want %d", id.UID, id.GmailMsgID, id.MessageID, want[id.UID])
		}
	}
	if got := g.fetches(); len(got) != 1 || got[0] != "UID FETCH 1:3 (UID RFC822.SIZE X-GM-MSGID)" {
		t.Errorf("X-GM-MSGID fetches %q", got)
	}
	// go-imap saw the EXISTS.
	if n := c.messageCountHint(); n != 4 {
		t.Errorf("after the unsolicited EXISTS, %d messages, want 4", n)
	}

	// The connection goes on. Not asked for: Identify alone, no X-GM-MSGID
	// fetch.
	if ids, err = c.Identify(ctx, gmailListed); err != nil || len(ids) != 3 || ids[0].GmailMsgID != 0 {
		t.Fatalf("Identify = %+v, %v", ids, err)
	}
	if got := g.fetches(); len(got) != 1 {
		t.Errorf("X-GM-MSGID fetched without being asked: %q", got)
	}
}

// TestIdentifyGmailMsgIDWithoutCapability: a server without X-GM-EXT-1 is
// never sent X-GM-MSGID, even when asked.
func TestIdentifyGmailMsgIDWithoutCapability(t *testing.T) {
	g := &gmailFake{plain: true}
	c := fakeLogin(t, fakeDialer(t, newFake(t, g.handle), 5*time.Second))
	ctx := context.Background()
	if _, err := c.Select(ctx); err != nil {
		t.Fatal(err)
	}
	ids, err := c.IdentifyWith(ctx, gmailListed, IdentifyOptions{GmailMsgID: true})
	if err != nil || len(ids) != 3 {
		t.Fatalf("IdentifyWith = %+v, %v", ids, err)
	}
	for _, id := range ids {
		if id.GmailMsgID != 0 {
			t.Errorf("UID %d has X-GM-MSGID %d", id.UID, id.GmailMsgID)
		}
	}
	if got := g.fetches(); len(got) != 0 {
		t.Errorf("X-GM-MSGID asked of a server without X-GM-EXT-1: %q", got)
	}
}
