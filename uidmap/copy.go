package uidmap

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// CopyOptions configure Copy.
type CopyOptions struct {
	// Force overwrites maildrops that dst knows differently.
	Force bool
	// Owner is the lock owner dst records while a maildrop is copied.
	Owner string
}

// CopyResult counts what Copy did.
type CopyResult struct {
	Copied, Records int   // maildrops written, and their records
	Present         int   // identical state there already
	Overwritten     int   // of Copied: other state replaced (Force)
	Maildrops       []Key // every maildrop with state in src, whatever became of it
	Refused         []Key // dst has other state (without Force)
	InUse           []Key // a session holds the maildrop lock in dst
}

// Copy copies the maildrops keys of src into dst (popbridge state migrate
// copies an embedded store into a shared one, the keys from
// boltstore.Store.Maildrops). Each is copied under its maildrop lock in
// dst, so that no session of a running instance works on it meanwhile, in
// one Apply: the first session afterwards sees all of it. A maildrop that
// dst knows differently is left alone unless o.Force, one whose lock is
// held is left for later. Running it again finds everything present.
func Copy(ctx context.Context, dst, src Store, keys []Key, o CopyOptions) (*CopyResult, error) {
	res := &CopyResult{}
	for _, key := range keys {
		from, err := src.Load(ctx, key)
		if err != nil {
			return res, err
		}
		if from.UIDValidity == 0 && len(from.Records) == 0 {
			continue // a bucket without state
		}
		res.Maildrops = append(res.Maildrops, key)
		lease, err := dst.Lock(ctx, key, o.Owner)
		if errors.Is(err, ErrLocked) {
			res.InUse = append(res.InUse, key)
			continue
		}
		if err != nil {
			return res, err
		}
		lctx, done := lease.Bound(ctx)
		err = copyMaildrop(lctx, dst, key, from, o.Force, res)
		done()
		lease.Release()
		if err != nil {
			return res, fmt.Errorf("%s (%s on %s): %w", key.User, key.Mailbox, key.Upstream, err)
		}
	}
	return res, nil
}

func copyMaildrop(ctx context.Context, dst Store, key Key, from *Maildrop, force bool, res *CopyResult) error {
	to, err := dst.Load(ctx, key)
	if err != nil {
		return err
	}
	if to.UIDValidity == from.UIDValidity && slices.Equal(to.Records, from.Records) {
		res.Present++
		return nil
	}
	exists := to.UIDValidity != 0 || len(to.Records) > 0
	if exists && !force {
		res.Refused = append(res.Refused, key)
		return nil
	}
	ch := &Change{Expect: to.UIDValidity, UIDValidity: from.UIDValidity}
	if to.UIDValidity != from.UIDValidity {
		// Everything stored goes with the UIDVALIDITY change: the records
		// are all new to dst, and Add takes its bulk path.
		ch.Add = from.Records
	} else {
		ch.Put = from.Records
		for _, r := range to.Records {
			if _, ok := from.Find(r.UID); !ok {
				ch.Delete = append(ch.Delete, r.UID)
			}
		}
	}
	if err := dst.Apply(ctx, key, ch); err != nil {
		return err
	}
	res.Copied++
	res.Records += len(from.Records)
	if exists {
		res.Overwritten++
	}
	return nil
}
