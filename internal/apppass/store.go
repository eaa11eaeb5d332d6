package apppass

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound means the user has no app password of that ID.
var ErrNotFound = errors.New("apppass: no such app password")

// Key names a user at an upstream, as internal/grants does.
type Key struct {
	Upstream string
	User     string
}

// Password is one app password as stored: never the password itself.
type Password struct {
	ID       string    `json:"id"`
	Label    string    `json:"label"` // the device, as the admin named it
	Hash     string    `json:"hash"`  // argon2id, PHC string format
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"last_used,omitzero"`
}

// Store keeps app passwords: uidmap/boltstore and uidmap/pgstore.
type Store interface {
	// AddAppPassword stores p; an existing ID of the user is an error.
	AddAppPassword(ctx context.Context, k Key, p Password) error
	// AppPasswords lists the user's app passwords, oldest first.
	AppPasswords(ctx context.Context, k Key) ([]Password, error)
	// AppPassword returns one, or ErrNotFound.
	AppPassword(ctx context.Context, k Key, id string) (Password, error)
	// DeleteAppPassword removes one, or returns ErrNotFound.
	DeleteAppPassword(ctx context.Context, k Key, id string) error
	// TouchAppPassword records a successful login with one.
	TouchAppPassword(ctx context.Context, k Key, id string, at time.Time) error
}
