package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"reflect"

	"github.com/popbridge/popbridge/uidmap"
	"github.com/popbridge/popbridge/uidmap/boltstore"
)

// cmdStateMigrate is `popbridge state migrate -from-bolt PATH [-force]`:
// it copies every maildrop of an embedded (bolt) store into the configured
// PostgreSQL store, so that a site grows from one instance to several
// without a single re-download.
func cmdStateMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("state migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := configFlag(fs)
	from := fs.String("from-bolt", "", "the bolt state file to copy (state.path of the single instance; stop that instance first)")
	force := fs.Bool("force", false, "overwrite maildrops that already have other state in PostgreSQL")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 || *from == "" {
		return errors.New("usage: popbridge state migrate -from-bolt PATH [-force] [-config FILE]")
	}
	cfg, err := loadConfigFile(*path)
	if err != nil {
		return err
	}
	if cfg.State.Driver != "postgres" {
		return fmt.Errorf("state migrate copies into the configured PostgreSQL store, but state.driver is %q: "+
			"set state.driver: postgres and state.dsn (or POPBRIDGE_STATE_DRIVER and POPBRIDGE_STATE_DSN)", cfg.State.Driver)
	}
	src, err := boltstore.Open(*from)
	if errors.Is(err, boltstore.ErrBusy) {
		return fmt.Errorf("%w: stop the popbridge that uses it first", err)
	}
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := openStore(cfg.State)
	if err != nil {
		return err
	}
	defer dst.Close()

	res, err := migrateStore(ctx, src, dst, cfg.Upstream.Address, *force)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "copied %d maildrops (%d messages) from %s to PostgreSQL\n", res.copied, res.records, *from)
	if res.present > 0 {
		fmt.Fprintf(stdout, "%d maildrops already present with the same state (nothing to do)\n", res.present)
	}
	if res.overwritten > 0 {
		fmt.Fprintf(stdout, "%d of them overwrote other state in PostgreSQL (-force)\n", res.overwritten)
	}
	if n := res.otherUpstream; n > 0 {
		fmt.Fprintf(stdout, "note: %d maildrops belong to an upstream other than upstream.address %q; they are copied as they are\n",
			n, cfg.Upstream.Address)
	}
	for _, k := range res.refused {
		fmt.Fprintf(stdout, "not copied, PostgreSQL has other state for it (-force overwrites): %s\n", describeKey(k))
	}
	for _, k := range res.inUse {
		fmt.Fprintf(stdout, "not copied, a session on another instance holds it (run again later): %s\n", describeKey(k))
	}
	if n := len(res.refused) + len(res.inUse); n > 0 {
		return fmt.Errorf("state migrate: %d maildrops not copied", n)
	}
	return nil
}

func describeKey(k uidmap.Key) string {
	return fmt.Sprintf("%s (%s on %s)", k.User, k.Mailbox, k.Upstream)
}

// migrateResult counts what migrateStore did.
type migrateResult struct {
	copied, records int // maildrops written, and their records
	present         int // identical state there already
	overwritten     int // of copied: other state replaced (force)
	otherUpstream   int // maildrops whose upstream is not the configured one
	refused, inUse  []uidmap.Key
}

// migrateStore copies every maildrop of src into dst. Each is copied under
// its maildrop lock in dst, so that no session of a running instance works
// on it meanwhile, in one Apply: the first session afterwards sees all of
// it. A maildrop that dst knows differently is left alone unless force.
// Running it again finds everything present. upstream is the configured
// upstream.address, which the maildrops are expected to belong to.
func migrateStore(ctx context.Context, src *boltstore.Store, dst uidmap.Store, upstream string, force bool) (*migrateResult, error) {
	keys, err := src.Maildrops(ctx)
	if err != nil {
		return nil, err
	}
	res := &migrateResult{}
	for _, key := range keys {
		from, err := src.Load(ctx, key)
		if err != nil {
			return res, err
		}
		if from.UIDValidity == 0 && len(from.Records) == 0 {
			continue // a bucket without state
		}
		if key.Upstream != upstream {
			res.otherUpstream++
		}
		lease, err := dst.Lock(ctx, key, "popbridge state migrate")
		if errors.Is(err, uidmap.ErrLocked) {
			res.inUse = append(res.inUse, key)
			continue
		}
		if err != nil {
			return res, err
		}
		lctx, done := lease.Bound(ctx)
		err = migrateMaildrop(lctx, dst, key, from, force, res)
		done()
		lease.Release()
		if err != nil {
			return res, fmt.Errorf("%s: %w", describeKey(key), err)
		}
	}
	return res, nil
}

func migrateMaildrop(ctx context.Context, dst uidmap.Store, key uidmap.Key, from *uidmap.Maildrop, force bool, res *migrateResult) error {
	to, err := dst.Load(ctx, key)
	if err != nil {
		return err
	}
	if to.UIDValidity == from.UIDValidity && sameRecords(to.Records, from.Records) {
		res.present++
		return nil
	}
	exists := to.UIDValidity != 0 || len(to.Records) > 0
	if exists && !force {
		res.refused = append(res.refused, key)
		return nil
	}
	ch := &uidmap.Change{Expect: to.UIDValidity, UIDValidity: from.UIDValidity}
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
	res.copied++
	res.records += len(from.Records)
	if exists {
		res.overwritten++
	}
	return nil
}

// sameRecords compares two maildrops' records, both in UID order.
func sameRecords(a, b []uidmap.Record) bool {
	return len(a) == len(b) && (len(a) == 0 || reflect.DeepEqual(a, b))
}
