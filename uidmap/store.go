package uidmap

import (
	"context"
	"errors"
)

// Key identifies one maildrop: the upstream it lives on, the user and the
// mailbox. Two upstreams may well have users of the same name.
type Key struct {
	Upstream string
	User     string
	Mailbox  string
}

// Message is what uidmap needs to know about an upstream message.
type Message struct {
	UID  uint32
	Size int64
}

// Entry binds an upstream UID to the UIDL served for it.
type Entry struct {
	UID  uint32
	UIDL string
}

// Maildrop is the stored state of one maildrop.
type Maildrop struct {
	// UIDValidity is the upstream UIDVALIDITY the UIDs below belong to;
	// zero when nothing is stored yet.
	UIDValidity uint32
	// UIDLs maps an upstream UID to the UIDL it was first served with.
	UIDLs map[uint32]string
}

// Store keeps the state of many maildrops. Implementations must make each
// call atomic: Load sees either all or none of an Assign.
type Store interface {
	// Load returns a maildrop's state in one read; an unknown maildrop is
	// an empty Maildrop, not an error.
	Load(ctx context.Context, key Key) (*Maildrop, error)
	// Assign records new entries in one batch. When uidValidity differs
	// from the stored one, the entries replace what was stored for the
	// old UIDVALIDITY.
	Assign(ctx context.Context, key Key, uidValidity uint32, entries []Entry) error
	// Lock takes the maildrop lock for one session. It fails with
	// ErrLocked when another session holds it. release gives it back.
	Lock(ctx context.Context, key Key, owner string) (release func(), err error)
	Close() error
}

// ErrLocked is returned by Store.Lock when another session holds the
// maildrop.
var ErrLocked = errors.New("uidmap: maildrop is locked by another session")
