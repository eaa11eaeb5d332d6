package imapupstream

import (
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// standIn is what Courier answers, with OK, for a message another client
// expunged until a NOOP reports the EXPUNGE.
const standIn = "Subject: message unavailable\r\n\r\nThis message is no longer available on the server.\r\n"

// standInServer answers every UID FETCH of UID 1 with standIn (BODY[] or
// its header, with RFC822.SIZE where asked), like Courier. exists says
// whether UID SEARCH still finds the message after a NOOP; fetches counts
// the UID FETCH commands.
func standInServer(t *testing.T, exists bool, fetches *atomic.Int32) string {
	return newFake(t, func(fc *fakeConn) {
		fc.send(fakeGreeting)
		fc.serve(func(tag, cmd, line string) bool {
			switch cmd {
			case "UID FETCH":
				fetches.Add(1)
				size := " RFC822.SIZE " + strconv.Itoa(len(standIn))
				switch {
				case strings.Contains(line, "HEADER"):
					hdr := standIn[:strings.Index(standIn, "\r\n\r\n")+4]
					fc.send("* 1 FETCH (UID 1" + size + " BODY[HEADER] {" + strconv.Itoa(len(hdr)) + "}\r\n" + hdr + ")\r\n")
				default:
					fc.send("* 1 FETCH (UID 1 BODY[] {" + strconv.Itoa(len(standIn)) + "}\r\n" + standIn + ")\r\n")
				}
				fc.send(tag + " OK done\r\n")
			case "NOOP":
				if !exists {
					fc.send("* 1 EXPUNGE\r\n")
				}
				fc.send(tag + " OK done\r\n")
			case "UID SEARCH":
				if exists {
					fc.send("* SEARCH 1\r\n")
				} else {
					fc.send("* SEARCH\r\n")
				}
				fc.send(tag + " OK done\r\n")
			default:
				return false
			}
			return true
		})
	})
}

// TestFetchStandInForExpunged: the server answers OK with another message's
// octets (Courier's stand-in, shorter than the listed size) and reports the
// expunge at the NOOP: Fetch, FetchAhead and Top give ErrNoSuchMessage before
// any octet is handed out, and the Conn goes on.
func TestFetchStandInForExpunged(t *testing.T) {
	var fetches atomic.Int32
	c := fakeLogin(t, fakeDialer(t, standInServer(t, false, &fetches), 5*time.Second))
	ctx := context.Background()
	if _, err := c.Select(ctx); err != nil {
		t.Fatal(err)
	}
	listed := MessageMeta{UID: 1, Size: 408}
	if r, err := c.Fetch(ctx, listed); !errors.Is(err, ErrNoSuchMessage) {
		if r != nil {
			data, _ := io.ReadAll(r)
			t.Fatalf("Fetch of a stand-in: reader with %q, err %v; want ErrNoSuchMessage", data, err)
		}
		t.Fatalf("Fetch of a stand-in: %v, want ErrNoSuchMessage", err)
	}
	if _, err := c.FetchAhead(ctx, listed, 2); !errors.Is(err, ErrNoSuchMessage) {
		t.Fatalf("FetchAhead of a stand-in: %v, want ErrNoSuchMessage", err)
	}
	for _, lines := range []int{0, 3} {
		if r, err := c.Top(ctx, listed, lines); !errors.Is(err, ErrNoSuchMessage) {
			if r != nil {
				r.Close()
			}
			t.Fatalf("Top %d of a stand-in: %v, want ErrNoSuchMessage", lines, err)
		}
	}
	if got := fetches.Load(); got != 4 {
		t.Fatalf("%d UID FETCH commands, want 4 (no second try for a message that is gone)", got)
	}
	if _, err := c.Select(ctx); err != nil {
		t.Fatalf("Conn unusable after the stand-in: %v", err)
	}
}

// TestFetchInexactSize: the answer's size differs from the listing, but the
// message is still there (a server whose RFC822.SIZE is inexact): it is
// fetched once more and streamed, since those octets are the message.
func TestFetchInexactSize(t *testing.T) {
	var fetches atomic.Int32
	c := fakeLogin(t, fakeDialer(t, standInServer(t, true, &fetches), 5*time.Second))
	ctx := context.Background()
	if _, err := c.Select(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := c.Fetch(ctx, MessageMeta{UID: 1, Size: 408})
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	data, err := io.ReadAll(r)
	if err != nil || string(data) != standIn {
		t.Fatalf("Fetch read %q, %v", data, err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if got := fetches.Load(); got != 2 {
		t.Fatalf("%d UID FETCH commands, want 2", got)
	}
}

// TestLoginRefusedSlowly: a server that holds its NO to LOGIN back for
// longer than the connect timeout (Courier does, by seconds) is a refusal,
// ErrAuthFailed, not an unavailable upstream: the login is bounded by the
// command timeout. A server that never answers LOGIN still times out.
func TestLoginRefusedSlowly(t *testing.T) {
	const delay = 600 * time.Millisecond
	slowNo := newFake(t, func(fc *fakeConn) {
		fc.send(fakeGreeting)
		fc.serve(func(tag, cmd, line string) bool {
			if cmd != "LOGIN" {
				return false
			}
			time.Sleep(delay)
			fc.send(tag + " NO [AUTHENTICATIONFAILED] Login failed.\r\n")
			return true
		})
	})
	cfg := Config{Address: slowNo, TLS: TLSNone, ConnectTimeout: 200 * time.Millisecond, CommandTimeout: 5 * time.Second}
	d, err := NewDialer(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Login(context.Background(), Credentials{Username: "u", Password: "wrong"})
	if !errors.Is(err, ErrAuthFailed) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("slow NO to LOGIN: %v, want ErrAuthFailed", err)
	}

	silent := newFake(t, func(fc *fakeConn) {
		fc.send(fakeGreeting)
		fc.serve(func(tag, cmd, line string) bool {
			if cmd == "LOGIN" {
				fc.stall()
				return true
			}
			return false
		})
	})
	cfg = Config{Address: silent, TLS: TLSNone, ConnectTimeout: 5 * time.Second, CommandTimeout: 300 * time.Millisecond}
	if d, err = NewDialer(cfg, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Login(context.Background(), Credentials{Username: "u", Password: "p"}); !isTimeout(err) {
		t.Fatalf("LOGIN never answered: %v, want a timeout (ErrUnavailable)", err)
	}
}

// TestIdentifySkipsStandIns: Identify and Headers leave out an answer whose
// RFC822.SIZE is not the listed one (a stand-in for an expunged message),
// whose header would give the message another identity.
func TestIdentifySkipsStandIns(t *testing.T) {
	const (
		date = `"07-Dec-2026 10:00:00 +0000"`
		hdr1 = "Subject: message unavailable\r\n\r\n"
		hdr2 = "Message-ID: <two@example>\r\n\r\n"
		fld2 = "Message-ID: <two@example>\r\n\r\n"
	)
	addr := newFake(t, func(fc *fakeConn) {
		fc.send(fakeGreeting)
		fc.serve(func(tag, cmd, line string) bool {
			if cmd != "UID FETCH" {
				return false
			}
			if strings.Contains(line, "HEADER.FIELDS") {
				fc.send("* 1 FETCH (UID 1 RFC822.SIZE 129 INTERNALDATE " + date + " BODY[HEADER.FIELDS (MESSAGE-ID X-UIDL)] {2}\r\n\r\n)\r\n" +
					"* 2 FETCH (UID 2 RFC822.SIZE 300 INTERNALDATE " + date + " BODY[HEADER.FIELDS (MESSAGE-ID X-UIDL)] {" + strconv.Itoa(len(fld2)) + "}\r\n" + fld2 + ")\r\n")
			} else {
				fc.send("* 1 FETCH (UID 1 RFC822.SIZE 129 BODY[HEADER] {" + strconv.Itoa(len(hdr1)) + "}\r\n" + hdr1 + ")\r\n" +
					"* 2 FETCH (UID 2 RFC822.SIZE 300 BODY[HEADER] {" + strconv.Itoa(len(hdr2)) + "}\r\n" + hdr2 + ")\r\n")
			}
			fc.send(tag + " OK done\r\n")
			return true
		})
	})
	c := fakeLogin(t, fakeDialer(t, addr, 5*time.Second))
	ctx := context.Background()
	if _, err := c.Select(ctx); err != nil {
		t.Fatal(err)
	}
	listed := []MessageMeta{{UID: 1, Size: 408}, {UID: 2, Size: 300}}
	ids, err := c.Identify(ctx, listed)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 || ids[0].UID != 2 || ids[0].MessageID != "<two@example>" {
		t.Fatalf("Identify = %+v, want UID 2 alone", ids)
	}
	var got []uint32
	if err := c.Headers(ctx, listed, func(uid uint32, _ []byte) { got = append(got, uid) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != 2 {
		t.Fatalf("Headers handed out UIDs %v, want [2]", got)
	}
}
