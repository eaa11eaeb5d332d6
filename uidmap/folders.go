package uidmap

import (
	"context"
	"fmt"
)

// Several mailboxes (folders) can make one POP3 maildrop: each is a
// maildrop of its own here, and a message that moves from one to another
// is recognised by its fingerprint (ResolveAdopting) and keeps its UIDL.

// Vanished returns the records of key's stored state whose messages are
// no longer in msgs (the mailbox's snapshot, of UIDVALIDITY uidValidity):
// the messages that left it since its last session, which another folder
// may have received. After a UIDVALIDITY change nothing is returned: the
// old UIDs say nothing about the new ones.
func (m *Map) Vanished(ctx context.Context, key Key, uidValidity uint32, msgs []Message) ([]Record, error) {
	drop, err := m.store.Load(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("uidmap: load %s: %w", key.User, err)
	}
	if drop.UIDValidity != uidValidity {
		return nil, nil
	}
	present := make(map[uint32]bool, len(msgs))
	for _, msg := range msgs {
		present[msg.UID] = true
	}
	var out []Record
	for _, r := range drop.Records {
		if !present[r.UID] {
			out = append(out, r)
		}
	}
	return out, nil
}

// WithUIDLSuffix returns a Map over the same store whose new UIDLs end in
// suffix (cut to fit 70 octets): the UIDLs of a second folder, which
// otherwise could repeat the first folder's (Dovecot's format is the UID
// and the UIDVALIDITY, and two mailboxes may share a UIDVALIDITY).
func (m *Map) WithUIDLSuffix(suffix string) *Map {
	nm := *m
	nm.format = suffixed{Format: m.format, suffix: suffix}
	return &nm
}

type suffixed struct {
	Format
	suffix string
}

func (f suffixed) UIDL(uidValidity, uid uint32, id *Identity) string {
	u := f.Format.UIDL(uidValidity, uid, id)
	if len(u)+len(f.suffix) > 70 {
		u = u[:70-len(f.suffix)]
	}
	return u + f.suffix
}

// Needs passes on what the wrapped format needs.
func (f suffixed) Needs() Needs { return NeedsOf(f.Format) }
