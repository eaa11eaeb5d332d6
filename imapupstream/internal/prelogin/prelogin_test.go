package prelogin

import (
	"net"
	"slices"
	"strings"
	"testing"
)

func TestParseGreeting(t *testing.T) {
	for _, tc := range []struct {
		line, status, text string
		caps               []string
	}{
		{"* OK [CAPABILITY IMAP4rev1 ID LITERAL+] Dovecot (Debian) ready.\r\n", "OK", "Dovecot (Debian) ready.", []string{"IMAP4rev1", "ID", "LITERAL+"}},
		{"* OK [ALERT] Dovecot ready.\r\n", "OK", "Dovecot ready.", nil},
		{"* ok hello there\r\n", "OK", "hello there", nil},
		{"* PREAUTH [CAPABILITY IMAP4rev1] welcome\r\n", "PREAUTH", "welcome", []string{"IMAP4rev1"}},
		{"garbage\r\n", "", "", nil},
	} {
		status, text, caps := parseGreeting(tc.line)
		if status != tc.status || text != tc.text || !slices.Equal(caps, tc.caps) {
			t.Errorf("parseGreeting(%q) = %q, %q, %q; want %q, %q, %q", tc.line, status, text, caps, tc.status, tc.text, tc.caps)
		}
	}
}

// TestReadResponseLong: a response longer than the reader's buffer, with a
// literal, comes back whole.
func TestReadResponseLong(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	long := "* CAPABILITY " + strings.Repeat("X-CAP ", 3*readSize/6) + "{5}\r\nhello\r\n"
	go func() {
		server.Write([]byte(long + "* OK next\r\n"))
		server.Close()
	}()
	p := NewConn(client, nil)
	got, err := p.ReadResponse(false)
	if err != nil || got != long {
		t.Fatalf("ReadResponse = %d octets, %v; want %d", len(got), err, len(long))
	}
	if got, err = p.ReadResponse(false); err != nil || got != "* OK next\r\n" {
		t.Fatalf("next = %q, %v", got, err)
	}
}
