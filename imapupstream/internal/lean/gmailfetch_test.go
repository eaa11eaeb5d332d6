package lean

import "testing"

func TestParseGmailFetch(t *testing.T) {
	good := map[string][3]uint64{
		"* 1 FETCH (UID 5 RFC822.SIZE 120 X-GM-MSGID 1278455344230334865)\r\n": {5, 120, 1278455344230334865},
		"* 12 FETCH (X-GM-MSGID 18446744073709551615 UID 7 RFC822.SIZE 0)\r\n": {7, 0, 18446744073709551615},
		"* 2 fetch (rfc822.size 9 x-gm-msgid 1 uid 4294967295)\r\n":            {4294967295, 9, 1},
	}
	for line, want := range good {
		uid, size, id, ok := ParseGmailFetch([]byte(line))
		if !ok || uint64(uid) != want[0] || uint64(size) != want[1] || id != want[2] {
			t.Errorf("%q: %d %d %d %v, want %v", line, uid, size, id, ok, want)
		}
		if !HasGmailMsgID([]byte(line)) {
			t.Errorf("%q: HasGmailMsgID false", line)
		}
	}
	for _, line := range []string{
		"* 1 FETCH (UID 5 RFC822.SIZE 120)\r\n",                                 // no X-GM-MSGID
		"* 1 FETCH (UID 5 RFC822.SIZE 120 X-GM-MSGID 1 X-GM-MSGID 2)\r\n",       // twice
		"* 1 FETCH (UID 0 RFC822.SIZE 120 X-GM-MSGID 1)\r\n",                    // UID 0
		"* 1 FETCH (UID 5 RFC822.SIZE 120 X-GM-MSGID 18446744073709551616)\r\n", // over 64 bits
		"* 1 FETCH (UID 5 RFC822.SIZE 120 X-GM-MSGID 1 FLAGS (\\Seen))\r\n",     // another item
		"* 1 FETCH (UID 5 RFC822.SIZE 120 X-GM-MSGID 1 )\r\n",                   // trailing space
		"* 1 FETCH (UID 5 RFC822.SIZE 120 X-GM-MSGID 1)",                        // no CRLF
		"* OK [UIDNEXT 4] ok\r\n",
	} {
		if _, _, _, ok := ParseGmailFetch([]byte(line)); ok {
			t.Errorf("%q parsed", line)
		}
	}
	if HasGmailMsgID([]byte("* 1 FETCH (UID 5 RFC822.SIZE 120)\r\n")) || HasGmailMsgID([]byte("* OK X-GM-MSGID\r\n")) {
		t.Error("HasGmailMsgID without the item, or not a FETCH")
	}
}
