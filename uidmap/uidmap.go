package uidmap

import (
	"context"
	"fmt"
	"strconv"
)

// Map assigns and remembers UIDLs on top of a Store.
type Map struct {
	store  Store
	format Format
}

// New returns a Map that keeps its state in store and names new messages
// with format.
func New(store Store, format Format) *Map {
	if format == nil {
		format = FormatDovecot{}
	}
	return &Map{store: store, format: format}
}

// Store returns the store behind m.
func (m *Map) Store() Store { return m.store }

// Resolve returns the UIDL of every message in msgs, in the same order.
// Messages seen before keep the UIDL they were first served with; new ones
// get one from the format and are stored in one batch before Resolve
// returns, so a UIDL is never served that a later session could not
// reproduce. UIDLs are unique within the maildrop.
func (m *Map) Resolve(ctx context.Context, key Key, uidValidity uint32, msgs []Message) ([]string, error) {
	drop, err := m.store.Load(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("uidmap: load %s: %w", key.User, err)
	}
	known := drop.UIDLs
	if drop.UIDValidity != uidValidity {
		// A new UIDVALIDITY: the stored UIDs name other messages now.
		known = nil
	}
	uidls := make([]string, len(msgs))
	used := make(map[string]struct{}, len(msgs))
	var fresh []Entry
	// Stored UIDLs first, so that a new message can never take the UIDL
	// an older one already has.
	for i, msg := range msgs {
		if u, ok := known[msg.UID]; ok {
			uidls[i] = u
			used[u] = struct{}{}
		}
	}
	for i, msg := range msgs {
		if uidls[i] != "" {
			continue
		}
		u := unique(m.format.UIDL(uidValidity, msg), used)
		uidls[i] = u
		used[u] = struct{}{}
		fresh = append(fresh, Entry{UID: msg.UID, UIDL: u})
	}
	if len(fresh) > 0 {
		if err := m.store.Assign(ctx, key, uidValidity, fresh); err != nil {
			return nil, fmt.Errorf("uidmap: assign %d UIDLs for %s: %w", len(fresh), key.User, err)
		}
	}
	return uidls, nil
}

// unique returns u, or u with a "-N" suffix when u is taken, as Dovecot's
// pop3_uidl_duplicates=rename does. The result stays within 70 octets.
func unique(u string, used map[string]struct{}) string {
	if _, taken := used[u]; !taken {
		return u
	}
	for n := 2; ; n++ {
		suffix := "-" + strconv.Itoa(n)
		base := u
		if len(base)+len(suffix) > 70 {
			base = base[:70-len(suffix)]
		}
		if _, taken := used[base+suffix]; !taken {
			return base + suffix
		}
	}
}
