package imapupstream

import (
	"bytes"
	"strconv"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/imapwire"
)

// The lines of the answers that Fetch reads itself (direct.go).

// bodyHead is the start of an untagged FETCH answer that carries BODY[]:
// "* n FETCH (UID u BODY[] {size}" CRLF, the items before the body in any
// order (UID among them), then the literal; or a whole line whose body is
// NIL (size -1) or a quoted string (quoted).
type bodyHead struct {
	uid    uint32
	size   int64  // the literal's size; -1 for NIL
	quoted []byte // the body when it came as a quoted string (size is its length)
	inLine bool   // the answer ended on this line (NIL or quoted): nothing follows
}

// parseBodyHead parses line as a bodyHead; ok is false for any other line,
// a FETCH without BODY[] or whose UID comes after the body included (such
// an answer cannot be checked before it streams; go-imap gets it).
func parseBodyHead(line []byte) (h bodyHead, ok bool) {
	rest, ok := bytes.CutPrefix(line, []byte("* "))
	if !ok {
		return h, false
	}
	sp := bytes.IndexByte(rest, ' ')
	if sp <= 0 || !allDigits(rest[:sp]) {
		return h, false
	}
	rest = rest[sp+1:]
	if len(rest) < 7 || !bytes.EqualFold(rest[:7], []byte("FETCH (")) {
		return h, false
	}
	rest = rest[7:]
	gotUID := false
	for {
		name, after, ok := itemName(rest)
		if !ok {
			return h, false
		}
		rest = after
		if bytes.EqualFold(name, []byte("BODY[]")) {
			if !gotUID {
				return h, false
			}
			return bodyValue(h, line, rest)
		}
		value, after, ok := skipValue(rest)
		if !ok {
			return h, false
		}
		if bytes.EqualFold(name, []byte("UID")) {
			n, err := strconv.ParseUint(string(value), 10, 32)
			if err != nil || n == 0 {
				return h, false
			}
			h.uid, gotUID = uint32(n), true
		}
		rest = after
		if len(rest) == 0 || rest[0] != ' ' {
			return h, false // the answer ended without BODY[]
		}
		rest = rest[1:]
	}
}

// bodyValue reads BODY[]'s value, at rest: a literal ending line, NIL, or
// a quoted string; for the last two the answer must end on this line.
func bodyValue(h bodyHead, line, rest []byte) (bodyHead, bool) {
	switch {
	case len(rest) > 0 && (rest[0] == '{' || rest[0] == '~'):
		// Nothing but the literal's announcement is left on the line.
		t := bytes.TrimPrefix(bytes.TrimSuffix(rest, []byte("\r\n")), []byte("~"))
		if len(t) < 3 || t[0] != '{' || t[len(t)-1] != '}' || !allDigits(bytes.TrimSuffix(t[1:len(t)-1], []byte("+"))) {
			return h, false
		}
		n, ok := imapwire.LiteralSize(line)
		h.size = n
		return h, ok
	case len(rest) >= 3 && bytes.EqualFold(rest[:3], []byte("NIL")):
		h.size, h.inLine = -1, true
		return h, endsAnswer(rest[3:])
	case len(rest) > 0 && rest[0] == '"':
		s, after, ok := quotedString(rest)
		if !ok {
			return h, false
		}
		h.quoted, h.size, h.inLine = s, int64(len(s)), true
		return h, endsAnswer(after)
	}
	return h, false
}

// endsAnswer reports whether rest, after the body, holds only items without
// literals and the answer's closing parenthesis.
func endsAnswer(rest []byte) bool {
	for {
		if bytes.Equal(rest, []byte(")\r\n")) {
			return true
		}
		if len(rest) == 0 || rest[0] != ' ' {
			return false
		}
		_, after, ok := itemName(rest[1:])
		if !ok {
			return false
		}
		if _, rest, ok = skipValue(after); !ok {
			return false
		}
	}
}

// itemName reads a FETCH item's name and the space after it, brackets
// ("BODY[HEADER.FIELDS (A B)]<0>") included.
func itemName(b []byte) (name, rest []byte, ok bool) {
	depth := 0
	for i, c := range b {
		switch {
		case c == '[':
			depth++
		case c == ']':
			depth--
		case c == ' ' && depth == 0:
			return b[:i], b[i+1:], i > 0
		case c == '\r' || c == '\n' || c == '(' && depth == 0 || c == ')' && depth == 0:
			return nil, nil, false
		}
	}
	return nil, nil, false
}

// skipValue reads one value: a number or atom, a quoted string, or a
// parenthesised list of them (nested). A literal is not skipped.
func skipValue(b []byte) (value, rest []byte, ok bool) {
	if len(b) == 0 {
		return nil, nil, false
	}
	switch b[0] {
	case '"':
		_, rest, ok := quotedString(b)
		return b[:len(b)-len(rest)], rest, ok
	case '(':
		i := 1
		for i < len(b) {
			switch b[i] {
			case ')':
				return b[:i+1], b[i+1:], true
			case ' ':
				i++
			default:
				_, rest, ok := skipValue(b[i:])
				if !ok {
					return nil, nil, false
				}
				i = len(b) - len(rest)
			}
		}
		return nil, nil, false
	case '{', '~', ')', ' ', '\r', '\n':
		return nil, nil, false
	}
	for i, c := range b {
		if c == ' ' || c == ')' || c == '\r' || c == '(' {
			return b[:i], b[i:], true
		}
		if c == '{' || c == '"' {
			return nil, nil, false
		}
	}
	return nil, nil, false
}

// quotedString reads a quoted string at b[0] == '"' and returns its
// content, unescaped.
func quotedString(b []byte) (s, rest []byte, ok bool) {
	var out []byte
	for i := 1; i < len(b); i++ {
		switch c := b[i]; c {
		case '\\':
			if i+1 == len(b) {
				return nil, nil, false
			}
			i++
			out = append(out, b[i])
		case '"':
			if out == nil {
				out = []byte{}
			}
			return out, b[i+1:], true
		case '\r', '\n':
			return nil, nil, false
		default:
			out = append(out, c)
		}
	}
	return nil, nil, false
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// parseStatus parses the rest of a tagged completion line after its tag:
// "OK …", or "NO [CODE …] text" and "BAD …" as the *imap.Error go-imap
// would have returned.
func parseStatus(rest []byte) error {
	rest = bytes.TrimRight(rest, "\r\n")
	word, text, _ := bytes.Cut(rest, []byte(" "))
	var typ imap.StatusResponseType
	switch {
	case bytes.EqualFold(word, []byte("OK")):
		return nil
	case bytes.EqualFold(word, []byte("NO")):
		typ = imap.StatusResponseTypeNo
	case bytes.EqualFold(word, []byte("BAD")):
		typ = imap.StatusResponseTypeBad
	default:
		typ = imap.StatusResponseTypeBad
		text = rest
	}
	e := &imap.Error{Type: typ}
	if len(text) > 0 && text[0] == '[' {
		if end := bytes.IndexByte(text, ']'); end > 0 {
			code, _, _ := bytes.Cut(text[1:end], []byte(" "))
			e.Code = imap.ResponseCode(bytes.ToUpper(code))
			text = bytes.TrimLeft(text[end+1:], " ")
		}
	}
	e.Text = string(text)
	return e
}
