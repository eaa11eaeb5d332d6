package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"go.uber.org/zap"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/internal/daemon"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/uidmap"
	"github.com/popbridge/popbridge/uidmap/boltstore"
)

// cmdState is `popbridge state show|mark-old|reset USER`: the operator's
// view of and hand on one user's uidmap state; and `state migrate`.
func cmdState(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: popbridge state show|mark-old|reset [-config FILE] USER\n       popbridge state migrate -from-bolt PATH [-force] [-config FILE]")
	}
	verb := args[0]
	if verb == "migrate" {
		return cmdStateMigrate(ctx, args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("state "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := configFlag(fs)
	passwordFile := fs.String("password-file", "-", "mark-old: file holding the user's IMAP password (- = first line of stdin)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("state %s: want exactly one USER", verb)
	}
	user := fs.Arg(0)
	cfg, err := loadConfigFile(*path)
	if err != nil {
		return err
	}
	store, err := daemon.OpenStore(cfg.State)
	if errors.Is(err, boltstore.ErrBusy) {
		return fmt.Errorf("%w: stop popbridge first (the bolt store belongs to one process)", err)
	}
	if err != nil {
		return err
	}
	defer store.Close()
	opts, err := daemon.BackendOptions(cfg, store, zap.NewNop())
	if err != nil {
		return err
	}
	// USER may be one device of a user (USER#DEVICE): its own marks, the
	// user's UIDLs and upstream.
	upUser, device := opts.Device(user)
	uo := opts.ForUser(upUser) // the user's route, as a session would take it
	key := uo.Key(upUser)
	if device != "" {
		key = uo.DeviceKey(upUser, device)
	}

	switch verb {
	case "show":
		if err := stateShow(ctx, store, key, stdout); err != nil {
			return err
		}
		if device == "" && uo.DeviceSeparator != "" {
			return showDevices(ctx, store, key, uo.DeviceSeparator, stdout)
		}
		return nil
	case "reset":
		if err := store.Reset(ctx, key); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "forgot the state of %s (%s on %s): UIDLs will be named afresh at the next login\n", user, key.Mailbox, key.Upstream)
		return nil
	case "mark-old":
		password, err := readPassword(*passwordFile)
		if err != nil {
			return err
		}
		n, err := markOld(ctx, uo, upUser, key, device != "", password)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %d messages marked as already retrieved; POP3 clients will see only mail that arrives from now on\n", user, n)
		return nil
	default:
		return fmt.Errorf("state: unknown verb %q (show, mark-old, reset, migrate)", verb)
	}
}

// stateShow prints the maildrop as POP3 saw it at the last session.
func stateShow(ctx context.Context, store uidmap.Store, key uidmap.Key, w io.Writer) error {
	drop, err := store.Load(ctx, key)
	if err != nil {
		return err
	}
	if len(drop.Records) == 0 {
		fmt.Fprintf(w, "no state for %s (%s on %s)\n", key.User, key.Mailbox, key.Upstream)
		return nil
	}
	fmt.Fprintf(w, "%s (%s on %s), UIDVALIDITY %d, as of its last POP3 session:\n", key.User, key.Mailbox, key.Upstream, drop.UIDValidity)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "N\tUID\tUIDL\tSIZE\tHIDDEN")
	n := 0
	for _, r := range drop.Records {
		num := "-"
		if !r.Hidden {
			n++
			num = fmt.Sprint(n)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%v\n", num, r.UID, r.UIDL, r.FP.Size, r.Hidden)
	}
	return tw.Flush()
}

// markOld names every message now in the mailbox and hides them all for
// the view key (the user's, or one device's), so that a device set up now
// downloads only mail that arrives later.
func markOld(ctx context.Context, uo *proxy.Options, user string, key uidmap.Key, device bool, password string) (int, error) {
	conn, err := uo.Dialer.Login(ctx, imapupstream.Credentials{Username: user, Password: password})
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	md, err := proxy.OpenMaildrop(ctx, conn, uo.Map, uo.Key(user))
	if err != nil {
		return 0, err
	}
	if device {
		// The device's records mirror the user's before they are marked.
		if _, _, err := uo.Map.DeviceView(ctx, key, md.UIDValidity, md.Messages, md.View.UIDLs, false); err != nil {
			return 0, err
		}
	}
	uids := make([]uint32, len(md.Messages))
	for i, msg := range md.Messages {
		uids[i] = msg.UID
	}
	return len(uids), uo.Map.SetHidden(ctx, key, md.UIDValidity, uids, true)
}

// loginLister is a store that lists maildrops by user name prefix
// (boltstore and pgstore).
type loginLister interface {
	Logins(ctx context.Context, upstream, mailbox, prefix string) ([]string, error)
}

// showDevices lists the devices of the user of key that have state.
func showDevices(ctx context.Context, store uidmap.Store, key uidmap.Key, sep string, w io.Writer) error {
	l, ok := store.(loginLister)
	if !ok {
		return nil
	}
	logins, err := l.Logins(ctx, key.Upstream, key.Mailbox, key.User+sep)
	if err != nil {
		return err
	}
	if len(logins) == 0 {
		fmt.Fprintf(w, "no devices of %s\n", key.User)
		return nil
	}
	fmt.Fprintf(w, "devices of %s (each with its own hidden marks; state show|reset|mark-old %s%sDEVICE):\n", key.User, key.User, sep)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tLISTED\tHIDDEN")
	for _, login := range logins {
		drop, err := store.Load(ctx, uidmap.Key{Upstream: key.Upstream, User: login, Mailbox: key.Mailbox})
		if err != nil {
			return err
		}
		hidden := 0
		for _, r := range drop.Records {
			if r.Hidden {
				hidden++
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\n", strings.TrimPrefix(login, key.User+sep), len(drop.Records)-hidden, hidden)
	}
	return tw.Flush()
}

// readPassword reads the first line of a file, or of stdin for "-": a
// password never goes on the command line, where ps would show it.
func readPassword(path string) (string, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return "", err
		}
		defer f.Close()
		r = f
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no password given (first line of -password-file, or of stdin)")
	}
	return line, nil
}
