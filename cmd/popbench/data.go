package main

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// mailbox is one user's INBOX as the benchmark fills it.
type mailbox struct {
	user string
	n    int
	msg  func(i int) []byte
}

// message returns a deterministic message of exactly size octets (at least
// the header's): a plain header, a text paragraph, then base64 lines as an
// attachment would have them, with CRLF line ends, one body line starting
// with a dot (so the POP3 side dot-stuffs) and a final CRLF.
func message(user string, i, size int) []byte {
	date := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
	var b strings.Builder
	b.Grow(size + 128)
	fmt.Fprintf(&b, "Return-Path: <sender%d@example.org>\r\n", i%97)
	fmt.Fprintf(&b, "From: Sender %d <sender%d@example.org>\r\n", i%97, i%97)
	fmt.Fprintf(&b, "To: %s@example.net\r\n", user)
	fmt.Fprintf(&b, "Subject: popbench message %d for %s\r\n", i, user)
	fmt.Fprintf(&b, "Date: %s\r\n", date.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%d.%s@popbench.example>\r\n", i, user)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	b.WriteString("Hello,\r\n\r\nthis is a message written by popbench.\r\n.a line that starts with a dot\r\n\r\n")
	rng := rand.New(rand.NewPCG(uint64(i), uint64(len(user))))
	raw := make([]byte, 57)
	for b.Len()+2 < size {
		for j := range raw {
			raw[j] = byte(rng.Uint32())
		}
		line := base64.StdEncoding.EncodeToString(raw) // 76 characters
		if room := size - b.Len() - 2; len(line) > room {
			line = line[:room]
		}
		b.WriteString(line)
		b.WriteString("\r\n")
	}
	if b.Len() < size { // one octet short of a CRLF: pad the last line
		s := b.String()
		return []byte(s[:len(s)-2] + "=\r\n")
	}
	return []byte(b.String())
}

// smallSize is the size of message i of a list mailbox: 1.5–6 KB.
func smallSize(i int) int { return 1500 + (i*7919)%4500 }

// sessionSize is the size of message i of a sessions mailbox: 4–40 KB.
func sessionSize(i int) int { return 4000 + (i*104729)%36000 }
