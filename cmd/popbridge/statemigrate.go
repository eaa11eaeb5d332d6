package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/popbridge/popbridge/internal/daemon"
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
	dst, err := daemon.OpenStore(cfg.State)
	if err != nil {
		return err
	}
	defer dst.Close()

	keys, err := src.Maildrops(ctx)
	if err != nil {
		return err
	}
	res, err := uidmap.Copy(ctx, dst, src, keys, uidmap.CopyOptions{Force: *force, Owner: "popbridge state migrate"})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "copied %d maildrops (%d messages) from %s to PostgreSQL\n", res.Copied, res.Records, *from)
	if res.Present > 0 {
		fmt.Fprintf(stdout, "%d maildrops already present with the same state (nothing to do)\n", res.Present)
	}
	if res.Overwritten > 0 {
		fmt.Fprintf(stdout, "%d of them overwrote other state in PostgreSQL (-force)\n", res.Overwritten)
	}
	otherUpstream := 0
	for _, k := range res.Maildrops {
		if k.Upstream != cfg.Upstream.Address {
			otherUpstream++
		}
	}
	if otherUpstream > 0 {
		fmt.Fprintf(stdout, "note: %d maildrops belong to an upstream other than upstream.address %q; they are copied as they are\n",
			otherUpstream, cfg.Upstream.Address)
	}
	for _, k := range res.Refused {
		fmt.Fprintf(stdout, "not copied, PostgreSQL has other state for it (-force overwrites): %s\n", describeKey(k))
	}
	for _, k := range res.InUse {
		fmt.Fprintf(stdout, "not copied, a session on another instance holds it (run again later): %s\n", describeKey(k))
	}
	if err := migrateOAuth2(ctx, dst, src, stdout); err != nil {
		return err
	}
	if n := len(res.Refused) + len(res.InUse); n > 0 {
		return fmt.Errorf("state migrate: %d maildrops not copied", n)
	}
	return nil
}

func describeKey(k uidmap.Key) string {
	return fmt.Sprintf("%s (%s on %s)", k.User, k.Mailbox, k.Upstream)
}
