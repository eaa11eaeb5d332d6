package uidmap

import (
	"errors"
	"fmt"
	"strconv"
)

// FormatGmail is what Gmail's POP3 serves as a message's UIDL: "GmailId"
// and its X-GM-MSGID in lower-case hex, without leading zeros
// (e.g. "GmailId12ebb12bc64aa548" for X-GM-MSGID 1363378113778197832), so
// that a site moving its users from Gmail's POP3 to popbridge in front of
// Gmail's IMAP keeps every UIDL. The X-GM-MSGID comes with the identity of
// each new message, fetched only when the server advertises X-GM-EXT-1;
// without it (not Gmail, or the capability gone) a message gets Dovecot's
// format, and the login says why (Needs.Unmet).
//
// This is from public material, not from a real Gmail: UIDLs that Gmail's
// POP3 served, as they appear in public code, and the X-GM-MSGID in hex
// being the message id Gmail shows elsewhere.
type FormatGmail struct{}

// UIDL implements Format.
func (FormatGmail) UIDL(uidValidity, uid uint32, id *Identity) string {
	if id == nil || id.GmailMsgID == 0 {
		return FormatDovecot{}.UIDL(uidValidity, uid, id)
	}
	return "GmailId" + strconv.FormatUint(id.GmailMsgID, 16)
}

// Needs implements needer: the X-GM-MSGID.
func (FormatGmail) Needs() Needs { return Needs{GmailMsgID: true} }

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
