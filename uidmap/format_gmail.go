package uidmap

import "strconv"

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
