package lean

import (
	"bytes"
	"strconv"
)

// ParseSizeFetch parses "* n FETCH (UID u RFC822.SIZE s)" CRLF, the items in
// either order, the snapshot's answer line; ok is false for any other line.
func ParseSizeFetch(line []byte) (uid uint32, size int64, ok bool) {
	rest, ok := fetchItems(line)
	if !ok {
		return 0, 0, false
	}
	var gotUID, gotSize bool
	for range 2 {
		sp := bytes.IndexByte(rest, ' ')
		if sp <= 0 {
			return 0, 0, false
		}
		name := rest[:sp]
		rest = rest[sp+1:]
		end := bytes.IndexByte(rest, ' ')
		if end < 0 {
			end = len(rest)
		}
		n, err := strconv.ParseUint(string(rest[:end]), 10, 63)
		if err != nil {
			return 0, 0, false
		}
		switch {
		case bytes.EqualFold(name, []byte("UID")) && !gotUID && n > 0 && n <= 1<<32-1:
			uid, gotUID = uint32(n), true
		case bytes.EqualFold(name, []byte("RFC822.SIZE")) && !gotSize:
			size, gotSize = int64(n), true
		default:
			return 0, 0, false
		}
		rest = rest[end:]
		if len(rest) > 0 {
			rest = rest[1:]
		}
	}
	return uid, size, gotUID && gotSize && len(rest) == 0
}

// fetchItems returns what is between the parentheses of an untagged FETCH
// line, ok false if line is not one.
func fetchItems(line []byte) ([]byte, bool) {
	rest, ok := bytes.CutPrefix(line, []byte("* "))
	if !ok {
		return nil, false
	}
	sp := bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return nil, false
	}
	for _, b := range rest[:sp] {
		if b < '0' || b > '9' {
			return nil, false
		}
	}
	rest = rest[sp+1:]
	if len(rest) < 7 || !bytes.EqualFold(rest[:7], []byte("FETCH (")) {
		return nil, false
	}
	rest, ok = bytes.CutSuffix(rest[7:], []byte(")\r\n"))
	return rest, ok
}

// IsFetch reports whether line is an untagged FETCH answer of any shape.
func IsFetch(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, []byte("* "))
	if !ok {
		return false
	}
	sp := bytes.IndexByte(rest, ' ')
	return sp > 0 && len(rest) > sp+5 && bytes.EqualFold(rest[sp+1:sp+6], []byte("FETCH"))
}
