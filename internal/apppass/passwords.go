package apppass

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"
)

// ErrWrongPassword means the password is not one of the user's.
var ErrWrongPassword = errors.New("apppass: wrong app password")

// alphabet is RFC 4648's base32 without padding, lower case: no 0/1/8/9,
// so nothing to mistake for O, l, B or g on a label.
const alphabet = "abcdefghijklmnopqrstuvwxyz234567"

const (
	groups   = 5 // the first is the ID
	groupLen = 4
)

// Passwords creates, checks, lists and revokes app passwords in a Store.
type Passwords struct {
	store  Store
	params Params
	now    func() time.Time
	// dummy is a hash to check a password against when its ID is unknown,
	// so that such a login costs what a wrong secret costs.
	dummy string
	// hashing bounds the hashes computed at once: each takes
	// Params.Memory, and a burst of logins (devices polling on the same
	// minute) would otherwise take it once per login.
	hashing chan struct{}
}

// New returns the app passwords of store, hashed with params (the zero
// value: DefaultParams).
func New(store Store, params Params) *Passwords {
	if params == (Params{}) {
		params = DefaultParams()
	}
	return &Passwords{store: store, params: params, now: time.Now, dummy: hash(randomGroup(groupLen), params),
		hashing: make(chan struct{}, runtime.GOMAXPROCS(0))}
}

// check is the package's check, at most GOMAXPROCS at once; a login
// whose context ends while it waits is refused.
func (ps *Passwords) check(ctx context.Context, secret, phc string) (bool, error) {
	select {
	case ps.hashing <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-ps.hashing }()
	return check(secret, phc)
}

func randomGroup(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)] // 256 is a multiple of 32: no bias
	}
	return string(b)
}

// split parses "iiii-ssss-ssss-ssss-ssss" (case and dashes optional, as
// typed into a device) into its ID and secret.
func split(password string) (id, secret string, ok bool) {
	p := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(password), "-", ""))
	if len(p) != groups*groupLen {
		return "", "", false
	}
	for _, c := range p {
		if !strings.ContainsRune(alphabet, c) {
			return "", "", false
		}
	}
	return p[:groupLen], p[groupLen:], true
}

// Create makes a new app password for the user's device label, stores its
// hash and returns it, to be shown once: it cannot be read back.
func (ps *Passwords) Create(ctx context.Context, k Key, label string) (string, Password, error) {
	for range 10 {
		id := randomGroup(groupLen)
		if _, err := ps.store.AppPassword(ctx, k, id); err == nil {
			continue // the user has this ID already
		} else if !errors.Is(err, ErrNotFound) {
			return "", Password{}, err
		}
		parts := []string{id}
		for range groups - 1 {
			parts = append(parts, randomGroup(groupLen))
		}
		p := Password{ID: id, Label: label, Hash: hash(strings.Join(parts[1:], ""), ps.params), Created: ps.now().UTC()}
		if err := ps.store.AddAppPassword(ctx, k, p); err != nil {
			return "", Password{}, err
		}
		return strings.Join(parts, "-"), p, nil
	}
	return "", Password{}, errors.New("apppass: no free ID (the user has too many app passwords)")
}

// Verify checks a login's password: the Password it is, or
// ErrWrongPassword. Its last use is recorded (best effort).
func (ps *Passwords) Verify(ctx context.Context, k Key, password string) (Password, error) {
	id, secret, ok := split(password)
	if !ok {
		ps.check(ctx, password, ps.dummy)
		return Password{}, ErrWrongPassword
	}
	p, err := ps.store.AppPassword(ctx, k, id)
	if errors.Is(err, ErrNotFound) {
		ps.check(ctx, secret, ps.dummy)
		return Password{}, ErrWrongPassword
	}
	if err != nil {
		return Password{}, err
	}
	match, err := ps.check(ctx, secret, p.Hash)
	if err != nil {
		return Password{}, fmt.Errorf("apppass: %s's password %s: %w", k.User, id, err)
	}
	if !match {
		return Password{}, ErrWrongPassword
	}
	p.LastUsed = ps.now().UTC()
	ps.store.TouchAppPassword(ctx, k, id, p.LastUsed)
	return p, nil
}

// List returns the user's app passwords (hashes, labels, dates).
func (ps *Passwords) List(ctx context.Context, k Key) ([]Password, error) {
	return ps.store.AppPasswords(ctx, k)
}

// Revoke removes one app password: its device can no longer log in.
func (ps *Passwords) Revoke(ctx context.Context, k Key, id string) error {
	return ps.store.DeleteAppPassword(ctx, k, strings.ToLower(id))
}

// RevokeAll removes every app password of the user; it returns how many.
func (ps *Passwords) RevokeAll(ctx context.Context, k Key) (int, error) {
	list, err := ps.store.AppPasswords(ctx, k)
	if err != nil {
		return 0, err
	}
	for _, p := range list {
		if err := ps.store.DeleteAppPassword(ctx, k, p.ID); err != nil && !errors.Is(err, ErrNotFound) {
			return 0, err
		}
	}
	return len(list), nil
}
