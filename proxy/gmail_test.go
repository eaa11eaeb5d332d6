package proxy_test

import (
	"bufio"
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/uidmap"
)

// scriptedGmail answers one connection as Gmail's IMAP would for a mailbox
// of two messages (UIDs 7 and 9), X-GM-MSGIDs included. It is a script,
// not Gmail: no real Gmail is reachable from the tests.
func scriptedGmail(t *testing.T, caps string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		send := func(s string) { c.Write([]byte(s)) }
		send("* OK [CAPABILITY IMAP4rev1] Gimap ready\r\n")
		const date = `"07-Dec-2026 10:00:00 +0000"`
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			f := strings.Fields(line)
			tag, cmd := f[0], strings.ToUpper(strings.Join(f[1:min(3, len(f))], " "))
			switch {
			case strings.HasPrefix(cmd, "LOGIN"):
				send(tag + " OK [CAPABILITY " + caps + "] logged in\r\n")
			case strings.HasPrefix(cmd, "SELECT"):
				send("* 2 EXISTS\r\n* OK [UIDVALIDITY 11] ok\r\n* OK [UIDNEXT 10] ok\r\n" + tag + " OK [READ-WRITE] selected\r\n")
			case strings.Contains(line, "X-GM-MSGID"):
				send("* 1 FETCH (X-GM-MSGID 1363378113778197832 UID 7 RFC822.SIZE 100)\r\n" +
					"* 2 FETCH (X-GM-MSGID 1278455344230334865 UID 9 RFC822.SIZE 200)\r\n" + tag + " OK Success\r\n")
			case strings.Contains(line, "HEADER.FIELDS"):
				for i, uid := range []int{7, 9} {
					fld := "Message-ID: <" + strconv.Itoa(uid) + "@example>\r\n\r\n"
					send("* " + strconv.Itoa(i+1) + " FETCH (UID " + strconv.Itoa(uid) + " RFC822.SIZE " + strconv.Itoa(100*(i+1)) +
						" INTERNALDATE " + date + " BODY[HEADER.FIELDS (MESSAGE-ID X-UIDL)] {" + strconv.Itoa(len(fld)) + "}\r\n" + fld + ")\r\n")
				}
				send(tag + " OK Success\r\n")
			case cmd == "UID FETCH":
				send("* 1 FETCH (UID 7 RFC822.SIZE 100)\r\n* 2 FETCH (UID 9 RFC822.SIZE 200)\r\n" + tag + " OK Success\r\n")
			case strings.HasPrefix(cmd, "LOGOUT"):
				send("* BYE\r\n" + tag + " OK bye\r\n")
				return
			default:
				send(tag + " BAD unknown\r\n")
			}
		}
	}()
	return ln.Addr().String()
}

// TestGmailUIDLFormat: with uidl_format gmail, a maildrop on a server with
// X-GM-EXT-1 names its new messages "GmailId" and their X-GM-MSGID in hex,
// as Gmail's POP3 does (from documentation: see uidmap.FormatGmail); on a
// server without it, Dovecot's format, and Unmet says why.
func TestGmailUIDLFormat(t *testing.T) {
	for _, c := range []struct {
		caps string
		want []string
	}{
		{"IMAP4rev1 UIDPLUS MOVE X-GM-EXT-1", []string{"GmailId12ebb12bc64aa548", "GmailId11bdfc5cae0c8191"}},
		{"IMAP4rev1 UIDPLUS MOVE", []string{"000000070000000b", "000000090000000b"}},
	} {
		d, err := imapupstream.NewDialer(imapupstream.Config{Address: scriptedGmail(t, c.caps), TLS: imapupstream.TLSNone,
			ConnectTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		conn, err := d.Login(ctx, imapupstream.Credentials{Username: "u@gmail.com", Password: "p"})
		if err != nil {
			t.Fatal(err)
		}
		f, _ := uidmap.ParseFormat("gmail")
		m := uidmap.New(uidmap.NewMemoryStore(), uidmap.Options{Format: f})
		unmet := m.Needs().Unmet(conn.Caps().Has)
		md, err := proxy.OpenMaildrop(ctx, conn, m, uidmap.Key{Upstream: "gmail", User: "u", Mailbox: "INBOX"})
		conn.Close()
		if err != nil {
			t.Fatalf("%s: %v", c.caps, err)
		}
		if got := md.View.UIDLs; strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("%s: UIDLs %v, want %v", c.caps, got, c.want)
		}
		if gmail := strings.Contains(c.caps, "X-GM-EXT-1"); (unmet == nil) != gmail {
			t.Errorf("%s: Unmet %v", c.caps, unmet)
		}
	}
}
