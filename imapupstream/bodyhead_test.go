package imapupstream

import (
	"errors"
	"testing"

	"github.com/emersion/go-imap/v2"
)

func TestParseBodyHead(t *testing.T) {
	good := map[string]bodyHead{
		"* 1 FETCH (UID 7 BODY[] {120}\r\n":                             {uid: 7, size: 120},
		"* 12 fetch (uid 9 body[] {0}\r\n":                              {uid: 9, size: 0},
		"* 3 FETCH (FLAGS (\\Seen $X) UID 4 MODSEQ (12) BODY[] {5}\r\n": {uid: 4, size: 5},
		"* 3 FETCH (UID 4 BODY[] ~{5}\r\n":                              {uid: 4, size: 5},
		"* 3 FETCH (UID 4 BODY[] NIL)\r\n":                              {uid: 4, size: -1, inLine: true},
		"* 3 FETCH (UID 4 BODY[] \"a\\\"b\" FLAGS ())\r\n":              {uid: 4, size: 3, quoted: []byte(`a"b`), inLine: true},
		"* 3 FETCH (UID 4 BODY[] \"\")\r\n":                             {uid: 4, size: 0, quoted: []byte{}, inLine: true},
	}
	for line, want := range good {
		h, ok := parseBodyHead([]byte(line))
		if !ok || h.uid != want.uid || h.size != want.size || string(h.quoted) != string(want.quoted) || (h.quoted == nil) != (want.quoted == nil) || h.inLine != want.inLine {
			t.Errorf("%q: %+v %v, want %+v", line, h, ok, want)
		}
	}
	for _, line := range []string{
		"* 1 FETCH (BODY[] {120}\r\n",                 // no UID before the body
		"* 1 FETCH (BODY[] {120}\r\n UID 7)",          // UID after it
		"* 1 FETCH (UID 7 BODY[HEADER] {120}\r\n",     // a part
		"* 1 FETCH (UID 7 BODY[]<0> {120}\r\n",        // a partial fetch
		"* 1 FETCH (UID 7 RFC822.SIZE 120)\r\n",       // no body
		"* 1 FETCH (UID 7 BODY[] {12x}\r\n",           // not a literal
		"* 1 FETCH (UID 7 BODY[] {120} x\r\n",         // something after it
		"* 1 FETCH (UID 7 BODY[] x{120}\r\n",          // something before it
		"* 1 FETCH (UID 0 BODY[] {120}\r\n",           // UID 0
		"* 1 FETCH (UID 4294967296 BODY[] {120}\r\n",  // over 32 bits
		"* 1 FETCH (UID 7 ENVELOPE ({3}\r\n",          // a literal elsewhere
		"* 1 FETCH (UID 7 BODY[] NIL UID)\r\n",        // junk after the body
		"* 1 FETCH (UID 7 BODY[] \"unterminated)\r\n", // a broken string
		"* x FETCH (UID 7 BODY[] {120}\r\n",           // no sequence number
		"* 1 EXISTS\r\n", "L1 OK done\r\n", "* OK [ALERT] {5}\r\n",
	} {
		if h, ok := parseBodyHead([]byte(line)); ok {
			t.Errorf("%q parsed: %+v", line, h)
		}
	}
}

func TestParseStatus(t *testing.T) {
	if err := parseStatus([]byte("OK Fetch completed (0.001 + 0.000 secs).\r\n")); err != nil {
		t.Fatal(err)
	}
	err := parseStatus([]byte("NO [SERVERBUG] Internal error occurred.\r\n"))
	var e *imap.Error
	if !errors.As(err, &e) || e.Type != imap.StatusResponseTypeNo || e.Code != imap.ResponseCodeServerBug || e.Text != "Internal error occurred." {
		t.Fatalf("%#v", err)
	}
	if !errors.Is(classify("UID FETCH", err), ErrUnavailable) {
		t.Fatal("a [SERVERBUG] completion does not classify as unavailable")
	}
	err = parseStatus([]byte("BAD Error in IMAP command\r\n"))
	if !errors.As(err, &e) || e.Type != imap.StatusResponseTypeBad || e.Text != "Error in IMAP command" {
		t.Fatalf("%#v", err)
	}
}
