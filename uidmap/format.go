package uidmap

import (
	"errors"
	"fmt"
	"strings"
)

// Format turns an upstream message identity into a UIDL. It is used only the
// first time a message is seen: after that the stored UIDL is served.
type Format interface {
	UIDL(uidValidity uint32, m Message) string
}

// FormatDovecot is Dovecot's default pop3_uidl_format "%08Xu%08Xv": eight
// lower-case hex digits of the UID, then eight of UIDVALIDITY
// (e.g. "000000016b0719a7"). Sites moving from Dovecot's POP3 keep every
// UIDL byte-identical, so no client downloads anything twice.
type FormatDovecot struct{}

// UIDL implements Format.
func (FormatDovecot) UIDL(uidValidity uint32, m Message) string {
	var b [16]byte
	putHex8(b[:8], m.UID)
	putHex8(b[8:], uidValidity)
	return string(b[:])
}

func putHex8(dst []byte, v uint32) {
	const digits = "0123456789abcdef"
	for i := 7; i >= 0; i-- {
		dst[i] = digits[v&0xf]
		v >>= 4
	}
}

// ParseFormat returns the Format named by policy.uidl_format.
func ParseFormat(name string) (Format, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "", "dovecot":
		return FormatDovecot{}, nil
	default:
		return nil, fmt.Errorf("uidl format %q: %w", name, errUnknownFormat)
	}
}

var errUnknownFormat = errors.New("unknown format (supported: dovecot)")

// ValidUIDL reports whether s is a legal POP3 unique-id: 1 to 70 octets in
// the range 0x21-0x7E (RFC 1939 section 7).
func ValidUIDL(s string) bool {
	if len(s) == 0 || len(s) > 70 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
