package prelogin

import (
	"slices"
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
