package proxy

import (
	"context"
	"fmt"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/uidmap"
)

// Maildrop is a maildrop opened upstream: its mailbox selected on a
// logged-in connection, snapshotted, and its messages named by uidmap.
type Maildrop struct {
	Conn        *imapupstream.Conn
	Key         uidmap.Key
	UIDValidity uint32
	Metas       []imapupstream.MessageMeta // the snapshot, in UID order
	Messages    []uidmap.Message           // the same, as uidmap takes them
	View        *uidmap.View               // the names Map gave them; nil without a Map
	// Cached: the mailbox was as at the last snapshot, whose copy Metas is
	// (no UID FETCH 1:* was sent).
	Cached bool
}

// OpenMaildrop selects the mailbox on conn (logged in as key.User),
// snapshots it and, when m is not nil, names every message through m, new
// ones by their identities (Identifier). Backend logins, `popbridge state
// mark-old` and `popbridge import-uidl` open maildrops so; import-uidl
// passes no Map: it matches the messages with the old server's UIDLs
// instead. conn stays the caller's to close.
func OpenMaildrop(ctx context.Context, conn *imapupstream.Conn, m *uidmap.Map, key uidmap.Key) (*Maildrop, error) {
	md, err := SnapshotMaildrop(ctx, conn, key)
	if err != nil {
		return nil, err
	}
	if m != nil {
		if err := md.Name(ctx, m, nil); err != nil {
			return nil, err
		}
	}
	return md, nil
}

// SnapshotMaildrop is the first half of OpenMaildrop: the mailbox selected
// and snapshotted, its messages not yet named.
func SnapshotMaildrop(ctx context.Context, conn *imapupstream.Conn, key uidmap.Key) (*Maildrop, error) {
	return snapshotMaildrop(ctx, conn, key, nil)
}

// snapshotMaildrop is SnapshotMaildrop that takes the snapshot from cache
// when the mailbox is as it was at the last one (nil: always fetched).
func snapshotMaildrop(ctx context.Context, conn *imapupstream.Conn, key uidmap.Key, cache *snapshots) (*Maildrop, error) {
	mbox, err := conn.Select(ctx)
	if err != nil {
		return nil, err
	}
	metas, cached := []imapupstream.MessageMeta(nil), false
	if cache != nil {
		metas, cached = cache.get(key, mbox)
	}
	if !cached {
		if metas, err = conn.Snapshot(ctx); err != nil {
			return nil, err
		}
		if cache != nil {
			cache.put(key, mbox, metas)
		}
	}
	md := &Maildrop{Conn: conn, Key: key, UIDValidity: mbox.UIDValidity, Metas: metas, Cached: cached,
		Messages: make([]uidmap.Message, len(metas))}
	for i, meta := range metas {
		md.Messages[i] = uidmap.Message{UID: meta.UID, Size: meta.Size}
	}
	return md, nil
}

// Name is the second half: every message named through m (md.View), new
// ones by their identities, or as one of donors that left another folder
// of the same POP3 maildrop (uidmap.Map.ResolveAdopting).
func (md *Maildrop) Name(ctx context.Context, m *uidmap.Map, donors []uidmap.Record) error {
	v, err := m.ResolveAdopting(ctx, md.Key, md.UIDValidity, md.Messages, Identifier(md.Conn, md.Messages, m.Needs()), donors)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	md.View = v
	return nil
}

// ImportTarget is the maildrop as uidmap's importer matches an old
// server's listing with it: identities and header hashes are fetched over
// Conn when the matching asks for them.
func (md *Maildrop) ImportTarget() uidmap.ImportTarget {
	return uidmap.ImportTarget{
		UIDValidity: md.UIDValidity,
		Messages:    md.Messages,
		Identify:    Identifier(md.Conn, md.Messages, uidmap.Needs{}), // fingerprints only
		HeaderHashes: func(ctx context.Context, uids []uint32) (map[uint32]string, error) {
			out := make(map[uint32]string, len(uids))
			err := md.Conn.Headers(ctx, Listed(md.Messages, uids), func(uid uint32, h []byte) { out[uid] = uidmap.HeaderHash(h) })
			return out, err
		},
	}
}
