package proxy

import (
	"slices"
	"sync"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/uidmap"
)

// snapshots keeps the last snapshot of each maildrop, so that a login that
// finds the mailbox as it was (a client polling a mailbox where nothing
// arrived) needs no UID FETCH 1:* at all. It is exact: with UIDVALIDITY,
// UIDNEXT and the message count unchanged, no message arrived (UIDNEXT
// would have grown) and none left (the count would have fallen, with
// nothing new to make up for it), so the UIDs are those of the snapshot,
// and IMAP never changes a message's RFC822.SIZE.
type snapshots struct {
	mu    sync.Mutex
	m     map[uidmap.Key]*snapEntry
	total int // metas held, at most maxMetas
}

type snapEntry struct {
	uidValidity, uidNext, count uint32
	metas                       []imapupstream.MessageMeta
}

// maxMetas bounds what the cache holds: 2 million messages, 32 MB.
const maxMetas = 2_000_000

// get returns a copy of key's snapshot if mb (the mailbox as SELECT found
// it) is the mailbox it was taken of.
func (c *snapshots) get(key uidmap.Key, mb *imapupstream.Mailbox) ([]imapupstream.MessageMeta, bool) {
	if mb.UIDNext == 0 {
		return nil, false // the server sent no UIDNEXT: nothing to compare
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[key]
	if e == nil || e.uidValidity != mb.UIDValidity || e.uidNext != mb.UIDNext || e.count != mb.NumMessages {
		return nil, false
	}
	return slices.Clone(e.metas), true
}

// put remembers metas, the snapshot of key taken right after the SELECT
// that found mb, and forgets others when the cache is full.
func (c *snapshots) put(key uidmap.Key, mb *imapupstream.Mailbox, metas []imapupstream.MessageMeta) {
	if mb.UIDNext == 0 || uint32(len(metas)) != mb.NumMessages || len(metas) > maxMetas/4 {
		// No UIDNEXT, or the mailbox changed under the snapshot: the entry
		// could not be trusted. A huge mailbox would crowd out the rest.
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[uidmap.Key]*snapEntry)
	}
	if old := c.m[key]; old != nil {
		c.total -= len(old.metas)
	}
	for k, e := range c.m {
		if c.total+len(metas) <= maxMetas {
			break
		}
		delete(c.m, k)
		c.total -= len(e.metas)
	}
	c.m[key] = &snapEntry{uidValidity: mb.UIDValidity, uidNext: mb.UIDNext, count: mb.NumMessages, metas: slices.Clone(metas)}
	c.total += len(metas)
}
