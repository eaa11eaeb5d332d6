package imapwire

import (
	"strings"
	"testing"
)

func TestLiteralSize(t *testing.T) {
	for _, c := range []struct {
		line string
		n    int64
		ok   bool
	}{
		// {n}, {n+}, ~{n}
		{"* 1 FETCH (BODY[] {12}\r\n", 12, true},
		{"* ID (\"a\" {12}\r\n", 12, true},
		{"a APPEND INBOX {3+}\r\n", 3, true},
		{"* X {3+}\r\n", 3, true},
		{"* 1 FETCH (BINARY[] ~{42}\r\n", 42, true},
		{"a APPEND INBOX ~{7+}\r\n", 7, true},
		{"{0}\r\n", 0, true},
		{"{007}\r\n", 7, true},
		{"* OK [ALERT] x {5} y {6}\r\n", 6, true},
		// No literal.
		{"* OK fine\r\n", 0, false},
		{"* 1 FETCH (UID 7 RFC822.SIZE 100)\r\n", 0, false},
		{"* OK {5} not at the end\r\n", 0, false},
		{"", 0, false},
		{"\r\n", 0, false},
		// Garbage.
		{"}\r\n", 0, false},
		{"{}\r\n", 0, false},
		{"{+}\r\n", 0, false},
		{"* OK {x}\r\n", 0, false},
		{"* OK {1x}\r\n", 0, false},
		{"* OK {-5}\r\n", 0, false},
		{"* OK {+5}\r\n", 0, false},
		{"* OK {5-}\r\n", 0, false},
		{"* OK {5++}\r\n", 0, false},
		{"* OK { 5}\r\n", 0, false},
		{"* OK 5}\r\n", 0, false},
		{"* OK {5}\r\n\r\n", 0, false},
		// Huge numbers: an int64 or nothing.
		{"{9223372036854775807}\r\n", 1<<63 - 1, true},
		{"~{9223372036854775807+}\r\n", 1<<63 - 1, true},
		{"{9223372036854775808}\r\n", 0, false},
		{"{99999999999999999999}\r\n", 0, false},
		{"{" + strings.Repeat("9", 100) + "}\r\n", 0, false},
		// Line ends: CRLF, a bare LF, none.
		{"* X {12}\n", 12, true},
		{"* X {12}", 12, true},
		{"{3+}", 3, true},
		{"* X {12}\r", 12, true},
		{"* X {12}\n\r", 0, false},
	} {
		n, ok := LiteralSize([]byte(c.line))
		if n != c.n || ok != c.ok {
			t.Errorf("LiteralSize(%q) = %d, %v; want %d, %v", c.line, n, ok, c.n, c.ok)
		}
	}
}

func TestMarkerTail(t *testing.T) {
	longest := "~{9223372036854775807+}\r\n"
	if len(longest) > MarkerTail {
		t.Fatalf("MarkerTail %d < %d", MarkerTail, len(longest))
	}
	line := strings.Repeat("x", 100) + longest
	if n, ok := LiteralSize([]byte(line[len(line)-MarkerTail:])); !ok || n != 1<<63-1 {
		t.Fatalf("the last MarkerTail octets: %d %v", n, ok)
	}
}
