package uidmap

import (
	"errors"
	"fmt"
)

// Needs is what a Format needs from the upstream beyond UID and
// UIDVALIDITY, which every IMAP server gives: the identity fetch of new
// messages asks for it only when it is needed.
type Needs struct {
	// GmailMsgID is Identity.GmailMsgID: Gmail's X-GM-MSGID, which a server
	// offers when it advertises the capability X-GM-EXT-1.
	GmailMsgID bool
}

// CapGmail is the capability of Gmail's IMAP extensions (X-GM-MSGID among them).
const CapGmail = "X-GM-EXT-1"

// needer is a Format with needs.
type needer interface{ Needs() Needs }

// NeedsOf returns what f needs from the upstream; nothing unless f says so.
func NeedsOf(f Format) Needs {
	if n, ok := f.(needer); ok {
		return n.Needs()
	}
	return Needs{}
}

// Needs returns what m's format needs from the upstream.
func (m *Map) Needs() Needs { return NeedsOf(m.format) }

// ErrUnmet is what Unmet wraps.
var ErrUnmet = errors.New("the upstream cannot give what policy.uidl_format needs")

// Unmet returns an error wrapping ErrUnmet when an upstream with the
// capabilities that has reports cannot give what n needs, nil when it can.
// Which server is behind an address is known only once logged in, so the
// login logs it as a warning: new messages then get Dovecot's format.
func (n Needs) Unmet(has func(capability string) bool) error {
	if n.GmailMsgID && !has(CapGmail) {
		return fmt.Errorf("%w: X-GM-MSGID needs %s, not advertised (not Gmail?): new messages get Dovecot's UIDLs", ErrUnmet, CapGmail)
	}
	return nil
}
