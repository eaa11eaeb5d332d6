package uidmap

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// named returns the named format s (case-insensitive): ok is false when s
// names none, and is a template then. Names popbridge cannot honour are
// refused with the way that works instead, so that check-config says so
// before any client sees a UIDL.
func named(s string) (f Format, ok bool, err error) {
	switch strings.ToLower(s) {
	case "dovecot":
		return FormatDovecot{}, true, nil
	case "cyrus":
		return FormatCyrus{}, true, nil
	case "gmail":
		return FormatGmail{}, true, nil
	case "courier":
		return nil, true, fmt.Errorf("uidl format %q: %w", s, errCourier)
	case "xuidl", "x-uidl":
		return nil, true, fmt.Errorf("uidl format %q: %w", s, errXUIDL)
	}
	return nil, false, nil
}

// errCourier: Courier's pop3d numbers the messages of a maildir itself, in
// its courierpop3dsizelist file ("UID<n>-<its own uidvalidity>", n counted
// in the order it first saw the files), not with the IMAP UIDs of
// courierimapuiddb; nothing of it can be read over IMAP.
var errCourier = errors.New("Courier's pop3d serves UIDLs of its own (courierpop3dsizelist), which IMAP does not show: " +
	"run popbridge import-uidl against the old pop3d once per user instead (Cyrus's uidl_format: courier is the template %v-%u)")

// errXUIDL: the X-UIDL header is policy.reuse_xuidl, which falls back to
// whatever uidl_format says for a message without one.
var errXUIDL = errors.New("an X-UIDL header is served with policy.reuse_xuidl: true; uidl_format names the UIDL of messages without one")

// FormatCyrus is what Cyrus's pop3d serves with its default
// uidl_format: cyrus (imapd.conf), "UIDVALIDITY.UID" in decimal
// (e.g. "1795627431.26"), so a site moving from Cyrus's own POP3 to
// popbridge in front of the same Cyrus keeps every UIDL. Cyrus's other
// settings are templates or names here: uidonly is "%u", dovecot is
// "dovecot", courier is "%v-%u". A mailbox without Cyrus's POP3_NEW_UIDL
// option is served "%u" whatever the setting (mbexamine shows the options;
// Cyrus sets it on every mailbox it finds empty, so only one carried over
// from an old Cyrus and never empty since lacks it).
type FormatCyrus struct{}

// UIDL implements Format.
func (FormatCyrus) UIDL(uidValidity, uid uint32, _ *Identity) string {
	return strconv.FormatUint(uint64(uidValidity), 10) + "." + strconv.FormatUint(uint64(uid), 10)
}
