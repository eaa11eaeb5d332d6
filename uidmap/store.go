package uidmap

import (
	"cmp"
	"context"
	"errors"
	"slices"
)

// Key identifies one maildrop: the upstream it lives on, the user and the
// mailbox. Two upstreams may well have users of the same name.
type Key struct {
	Upstream string
	User     string
	Mailbox  string
}

// Fingerprint recognises a message again when its UID no longer does (after
// an upstream UIDVALIDITY change). Hashes, not header values, are stored:
// the store holds no mail content.
type Fingerprint struct {
	Size       int64  // RFC822.SIZE
	Date       int64  // INTERNALDATE, Unix seconds; 0 when unknown
	MessageID  string // hash of the normalised Message-ID; "" when it has none
	HeaderHash string // hash of the normalised header, for messages without Message-ID
}

// Record is what is stored for one message.
type Record struct {
	UID    uint32
	UIDL   string
	Hidden bool // deleted by a POP3 client under policy.on_dele: hide
	FP     Fingerprint
}

// Maildrop is the stored state of one maildrop.
type Maildrop struct {
	// UIDValidity is the upstream UIDVALIDITY the UIDs below belong to;
	// zero when nothing is stored yet.
	UIDValidity uint32
	// Records in ascending order of UID, one per UID. A sorted slice and
	// not a map: a login on a 50,000-message maildrop merges it with the
	// snapshot, which costs a fraction of building and probing a map.
	Records []Record
}

// Find returns the record of uid, by binary search.
func (d *Maildrop) Find(uid uint32) (Record, bool) {
	i, ok := slices.BinarySearchFunc(d.Records, uid, func(r Record, uid uint32) int { return cmp.Compare(r.UID, uid) })
	if !ok {
		return Record{}, false
	}
	return d.Records[i], true
}

// Change is one atomic update of a maildrop. Stores apply it as a
// compare-and-set, so that sessions on several instances (or lock: none)
// that compute changes from the same state at once cannot give one message
// two UIDLs: the loser gets ErrStale, writes nothing, and starts again from
// a fresh Load.
type Change struct {
	// Expect is the UIDVALIDITY the change was computed from, as Load
	// returned it (zero for a maildrop with nothing stored). If the stored
	// one differs, Apply fails with ErrStale.
	Expect uint32
	// UIDValidity of the records in Add and Put. When it differs from the
	// stored one, every stored record is dropped first (their UIDs name
	// other messages now): Add and Put must then carry the whole maildrop.
	UIDValidity uint32
	// Add names messages for the first time. If a UID in Add is stored
	// already (another session named it first), Apply fails with ErrStale.
	Add []Record
	// Put replaces records (hidden marks, imports), by UID, or adds them.
	Put    []Record
	Delete []uint32 // UIDs gone from the upstream
}

// Store keeps the state of many maildrops. Each call is atomic: Load sees
// all of an Apply or none of it.
type Store interface {
	// Load returns a maildrop's state in one read; an unknown maildrop is
	// an empty Maildrop, not an error.
	Load(ctx context.Context, key Key) (*Maildrop, error)
	// Apply writes a change in one transaction.
	Apply(ctx context.Context, key Key, ch *Change) error
	// Reset forgets everything about a maildrop.
	Reset(ctx context.Context, key Key) error
	// Lock takes the maildrop lock for one session. It fails with
	// ErrLocked when another session holds it. The Lease says when the
	// lock is lost before it is released.
	Lock(ctx context.Context, key Key, owner string) (*Lease, error)
	Close() error
}

// ErrLocked is returned by Store.Lock when another session holds the
// maildrop.
var ErrLocked = errors.New("uidmap: maildrop is locked by another session")

// ErrStale is returned when a change was computed from a maildrop state that
// is no longer current: its UIDVALIDITY changed in between, or another
// session named one of its new messages first.
var ErrStale = errors.New("uidmap: maildrop state changed")
