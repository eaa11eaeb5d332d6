package uidmap

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/popbridge/popbridge/pop3"
)

// Format names a message the first time it is seen: after that the stored
// UIDL is served, whatever the format says.
type Format interface {
	// UIDL returns the new message's unique-id. id may be nil when the
	// upstream gave no identity.
	UIDL(uidValidity uint32, uid uint32, id *Identity) string
}

// FormatDovecot is Dovecot's default pop3_uidl_format "%08Xu%08Xv": eight
// lower-case hex digits of the UID, then eight of UIDVALIDITY
// (e.g. "000000016b0719a7"). Sites moving from Dovecot's POP3 keep every
// UIDL byte-identical, so no client downloads anything twice.
type FormatDovecot struct{}

// UIDL implements Format.
func (FormatDovecot) UIDL(uidValidity, uid uint32, _ *Identity) string {
	var b [16]byte
	putHex8(b[:8], uid)
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

// template is a pop3_uidl_format-style template: %u (UID), %v
// (UIDVALIDITY), %m (hash of the Message-ID, or of the header without one),
// %% (a percent sign), with Dovecot's modifiers: a width with optional zero
// padding and X for hexadecimal ("%08Xu"). Like Dovecot, hex is lower case.
type template struct {
	parts []tmplPart
}

type tmplPart struct {
	lit   string
	verb  byte // 0 for a literal
	width int
	zero  bool
	hex   bool
}

// ParseFormat returns the Format named by policy.uidl_format: a named
// format ("dovecot", the default, "cyrus" or "gmail"; see named) or a
// template such as "%v.%u" or "%08Xv%08Xu".
func ParseFormat(spec string) (Format, error) {
	s := strings.TrimSpace(spec)
	if s == "" {
		return FormatDovecot{}, nil
	}
	if f, ok, err := named(s); ok {
		return f, err
	}
	var t template
	var lit strings.Builder
	hasVar := false
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			lit.WriteByte(s[i])
			continue
		}
		i++
		if i < len(s) && s[i] == '%' {
			lit.WriteByte('%')
			continue
		}
		p := tmplPart{}
		if i < len(s) && s[i] == '0' {
			p.zero = true
			i++
		}
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i > start {
			p.width, _ = strconv.Atoi(s[start:i])
		}
		if i < len(s) && (s[i] == 'X' || s[i] == 'x') {
			p.hex = true
			i++
		}
		if i >= len(s) || !strings.ContainsRune("uvm", rune(s[i])) {
			return nil, fmt.Errorf("uidl format %q: %w", spec, errBadTemplate)
		}
		p.verb = s[i]
		if lit.Len() > 0 {
			t.parts = append(t.parts, tmplPart{lit: lit.String()})
			lit.Reset()
		}
		t.parts = append(t.parts, p)
		hasVar = hasVar || p.verb == 'u' || p.verb == 'm'
	}
	if lit.Len() > 0 {
		t.parts = append(t.parts, tmplPart{lit: lit.String()})
	}
	if !hasVar {
		// Without %u or %m two messages would get the same UIDL.
		return nil, fmt.Errorf("uidl format %q: needs %%u or %%m: %w", spec, errBadTemplate)
	}
	probe := t.UIDL(0xffffffff, 0xffffffff, nil)
	if !pop3.ValidUIDL(probe) {
		return nil, fmt.Errorf("uidl format %q gives %q, not a valid UIDL (1-70 of 0x21-0x7E): %w", spec, probe, errBadTemplate)
	}
	return &t, nil
}

var errBadTemplate = errors.New("want dovecot, cyrus, gmail or a template of %u, %v, %m with optional width and X, e.g. %08Xu%08Xv")

// UIDL implements Format.
func (t *template) UIDL(uidValidity, uid uint32, id *Identity) string {
	var b strings.Builder
	for _, p := range t.parts {
		var s string
		switch p.verb {
		case 0:
			b.WriteString(p.lit)
			continue
		case 'u', 'v':
			n := uid
			if p.verb == 'v' {
				n = uidValidity
			}
			if p.hex {
				s = strconv.FormatUint(uint64(n), 16)
			} else {
				s = strconv.FormatUint(uint64(n), 10)
			}
		case 'm':
			fp := fingerprint(0, id)
			s = fp.MessageID + fp.HeaderHash
			if s == "" {
				// No identity at all: fall back to something unique.
				s = fmt.Sprintf("%08x%08x", uid, uidValidity)
			}
		}
		for pad := p.width - len(s); pad > 0; pad-- {
			if p.zero {
				b.WriteByte('0')
			} else {
				b.WriteByte('_')
			}
		}
		b.WriteString(s)
	}
	return b.String()
}
