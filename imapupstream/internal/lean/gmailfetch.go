package lean

import (
	"bytes"
	"strconv"
)

// ParseGmailFetch parses "* n FETCH (UID u RFC822.SIZE s X-GM-MSGID m)"
// CRLF, the items in any order: the answer to a fetch of Gmail's message
// ids, which go-imap cannot decode (an unknown item ends its reader). ok is
// false for any other line.
func ParseGmailFetch(line []byte) (uid uint32, size int64, msgID uint64, ok bool) {
	rest, ok := fetchItems(line)
	if !ok {
		return 0, 0, 0, false
	}
	var got [3]bool
	for len(rest) > 0 {
		sp := bytes.IndexByte(rest, ' ')
		if sp <= 0 {
			return 0, 0, 0, false
		}
		name := rest[:sp]
		rest = rest[sp+1:]
		end := bytes.IndexByte(rest, ' ')
		if end < 0 {
			end = len(rest)
		}
		n, err := strconv.ParseUint(string(rest[:end]), 10, 64)
		if err != nil {
			return 0, 0, 0, false
		}
		switch {
		case bytes.EqualFold(name, []byte("UID")) && !got[0] && n > 0 && n <= 1<<32-1:
			uid, got[0] = uint32(n), true
		case bytes.EqualFold(name, []byte("RFC822.SIZE")) && !got[1] && n < 1<<63:
			size, got[1] = int64(n), true
		case bytes.EqualFold(name, []byte("X-GM-MSGID")) && !got[2]:
			msgID, got[2] = n, true
		default:
			return 0, 0, 0, false
		}
		rest = rest[end:]
		if len(rest) > 0 {
			rest = rest[1:]
			if len(rest) == 0 {
				return 0, 0, 0, false // a trailing space
			}
		}
	}
	return uid, size, msgID, got[0] && got[1] && got[2]
}

// HasGmailMsgID reports whether an untagged FETCH line carries an
// X-GM-MSGID item, even one ParseGmailFetch does not read: such a line
// must not reach go-imap either.
func HasGmailMsgID(line []byte) bool {
	return IsFetch(line) && bytes.Contains(bytes.ToUpper(line), []byte("X-GM-MSGID"))
}
