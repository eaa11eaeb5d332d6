package uidmap

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// Identity is what the upstream tells about a message beyond its UID and
// size, fetched once when the message is first seen (and for every message
// after a UIDVALIDITY change).
type Identity struct {
	UID          uint32
	InternalDate time.Time
	MessageID    string // raw Message-ID header value; "" if none
	XUIDL        string // X-UIDL header left by an earlier POP3 server; "" if none
	Header       []byte // whole header, needed only when MessageID is ""
	// GmailMsgID is Gmail's X-GM-MSGID, fetched only for a format that
	// needs it (Needs) from a server that offers it; 0 otherwise.
	GmailMsgID uint64
}

// fingerprint reduces an identity to what is stored.
func fingerprint(size int64, id *Identity) Fingerprint {
	fp := Fingerprint{Size: size}
	if id == nil {
		return fp
	}
	if !id.InternalDate.IsZero() {
		fp.Date = id.InternalDate.Unix()
	}
	if mid := normaliseMessageID(id.MessageID); mid != "" {
		fp.MessageID = shortHash([]byte(mid))
	} else if len(id.Header) > 0 {
		fp.HeaderHash = shortHash(normaliseHeader(id.Header))
	}
	return fp
}

func shortHash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// normaliseMessageID keeps the id itself: "<a@b>" whatever the spacing
// or comments around it.
func normaliseMessageID(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '<'); i >= 0 {
		if j := strings.IndexByte(s[i:], '>'); j > 0 {
			return s[i : i+j+1]
		}
	}
	return s
}

// volatileHeaders are added or rewritten by servers and delivery agents,
// so they differ between two stored copies of the same message (the list
// follows Dovecot's pop3-migration plugin).
var volatileHeaders = map[string]bool{
	"received": true, "return-path": true, "delivered-to": true, "x-original-to": true,
	"x-uidl": true, "x-uid": true, "status": true, "x-status": true, "x-keywords": true,
	"x-imap": true, "x-imapbase": true, "content-length": true, "lines": true,
}

// normaliseHeader unfolds the header, drops volatile fields, lower-cases
// field names and collapses white space, so that copies of a message that
// servers stored differently still hash the same.
func normaliseHeader(h []byte) []byte {
	var out bytes.Buffer
	var field []byte
	flush := func() {
		if len(field) == 0 {
			return
		}
		name, value, ok := bytes.Cut(field, []byte(":"))
		field = field[:0]
		if !ok {
			return
		}
		n := strings.ToLower(strings.TrimSpace(string(name)))
		if volatileHeaders[n] {
			return
		}
		out.WriteString(n)
		out.WriteByte(':')
		out.WriteString(strings.Join(strings.Fields(string(value)), " "))
		out.WriteByte('\n')
	}
	for _, line := range bytes.Split(h, []byte("\n")) {
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			break // end of header
		}
		if line[0] == ' ' || line[0] == '\t' {
			field = append(append(field, ' '), line...)
			continue
		}
		flush()
		field = append(field[:0], line...)
	}
	flush()
	return out.Bytes()
}
