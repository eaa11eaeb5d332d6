package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/daemon"
	"github.com/popbridge/popbridge/pop3/pop3client"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/uidmap"
	"github.com/popbridge/popbridge/uidmap/boltstore"
	"github.com/popbridge/popbridge/uidmap/maildir"
)

const importUsage = `usage: popbridge import-uidl [-config FILE] -user USER
         (-pop3 HOST:PORT [-pop3-tls none|starttls|implicit] [-pop3-user U] | -dovecot-uidlist FILE [-uidl-format FMT])
         [-force] [-dry-run]

Seeds popbridge's state with the UIDLs a previous POP3 server gave USER's
messages, so that POP3 clients moving to popbridge download nothing again.
Run it once per user, before the user's first popbridge session, with
popbridge stopped (state.driver bolt: the state file belongs to one process;
with postgres popbridge may run, and the user's maildrop lock keeps the
user's sessions out meanwhile).

The user's password is read from the first line of standard input (never
from a flag: it would show in ps), or asked for when standard input is a
terminal. It logs in to the upstream IMAP server of the configuration as the
user (not needed with upstream.master_user) and, by default, to the old POP3
server too; with -pop3-own-password the old server's password is the second
line.

The old UIDLs come from one of:
  -pop3 HOST:PORT         the old POP3 server (UIDL and LIST; TOP n 0 only
                          for messages the sizes do not settle)
  -dovecot-uidlist FILE   a Dovecot maildir's dovecot-uidlist: a record's P
                          field is its POP3 UIDL, otherwise -uidl-format makes
                          it. When its UIDVALIDITY is the upstream's (the same
                          maildir), messages are matched by UID; otherwise by
                          size and by headers, read from the maildir around
                          FILE when it is there.

Old messages are matched to IMAP messages by UID (same maildir), then by size
in order, then by a hash of the headers. Matched messages keep their old
UIDL; IMAP messages without a match are named by popbridge at the next login;
old messages without a match are reported. Existing state for the user is
left alone unless -force (which replaces it, keeping only the hidden marks of
messages still there). The counts are printed on standard output.

example:
  printf '%s\n' "$PASSWORD" | popbridge import-uidl -user alice@example.net -pop3 old.example.net:995 -dry-run

flags:
`

// importFlags are import-uidl's command line.
type importFlags struct {
	configPath      string
	user            string
	pop3Addr        string
	pop3TLS         string
	pop3User        string
	pop3CA          string
	pop3Insecure    bool
	pop3OwnPassword bool
	uidlist         string
	uidlFormat      string
	force           bool
	dryRun          bool
}

func parseImportFlags(args []string, stderr io.Writer) (*importFlags, error) {
	f := &importFlags{}
	fs := flag.NewFlagSet("import-uidl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		io.WriteString(fs.Output(), importUsage)
		fs.PrintDefaults()
	}
	configPath := configFlag(fs)
	fs.StringVar(&f.user, "user", "", "the user, as POP3 clients and the upstream know it (required)")
	fs.StringVar(&f.pop3Addr, "pop3", "", "the old POP3 server, HOST:PORT")
	fs.StringVar(&f.pop3TLS, "pop3-tls", "", "none, starttls or implicit (default: implicit on port 995, else starttls)")
	fs.StringVar(&f.pop3User, "pop3-user", "", "user name on the old POP3 server (default: -user)")
	fs.StringVar(&f.pop3CA, "pop3-ca", "", "PEM file of CA certificates to trust for the old POP3 server, besides the system's")
	fs.BoolVar(&f.pop3Insecure, "pop3-insecure-skip-verify", false, "do not verify the old POP3 server's certificate")
	fs.BoolVar(&f.pop3OwnPassword, "pop3-own-password", false, "the old POP3 server's password is the second line of standard input")
	fs.StringVar(&f.uidlist, "dovecot-uidlist", "", "a Dovecot maildir's dovecot-uidlist file, instead of -pop3")
	fs.StringVar(&f.uidlFormat, "uidl-format", "%08Xu%08Xv", "the old Dovecot's pop3_uidl_format, for -dovecot-uidlist records without a saved UIDL (%u, %v, width and X)")
	fs.BoolVar(&f.force, "force", false, "replace the user's existing popbridge state")
	fs.BoolVar(&f.dryRun, "dry-run", false, "match and report, write nothing")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	f.configPath = *configPath
	usageErr := func(format string, a ...any) error {
		fmt.Fprintf(stderr, "popbridge import-uidl: %s\n", fmt.Sprintf(format, a...))
		fs.Usage()
		return flag.ErrHelp // exit 2, the message is out
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	switch {
	case fs.NArg() > 0:
		return nil, usageErr("unexpected argument %q (the password is read from standard input)", fs.Arg(0))
	case f.user == "":
		return nil, usageErr("-user is required")
	case (f.pop3Addr == "") == (f.uidlist == ""):
		return nil, usageErr("give either -pop3 or -dovecot-uidlist")
	case f.pop3Addr == "" && (set["pop3-tls"] || set["pop3-user"] || set["pop3-ca"] || set["pop3-insecure-skip-verify"] || set["pop3-own-password"]):
		return nil, usageErr("-pop3-… flags go with -pop3")
	case f.uidlist == "" && set["uidl-format"]:
		return nil, usageErr("-uidl-format goes with -dovecot-uidlist")
	}
	if f.pop3Addr != "" {
		host, port, err := net.SplitHostPort(f.pop3Addr)
		if err != nil || host == "" {
			return nil, usageErr("-pop3 %q: want HOST:PORT", f.pop3Addr)
		}
		switch f.pop3TLS {
		case "":
			f.pop3TLS = "starttls"
			if port == "995" || port == "pop3s" {
				f.pop3TLS = "implicit"
			}
		case "none", "starttls", "implicit":
		default:
			return nil, usageErr("-pop3-tls %q: want none, starttls or implicit", f.pop3TLS)
		}
		if f.pop3User == "" {
			f.pop3User = f.user
		}
	}
	return f, nil
}

// cmdImportUIDL is `popbridge import-uidl`.
func cmdImportUIDL(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	f, err := parseImportFlags(args, stderr)
	if err != nil {
		return err
	}
	cfg, err := loadConfigFile(f.configPath)
	if err != nil {
		return err
	}
	var format uidmap.Format
	if f.uidlist != "" {
		if format, err = uidmap.ParseFormat(f.uidlFormat); err != nil {
			return fmt.Errorf("-uidl-format: %w", err)
		}
	}
	log, err := newLogger(cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return err
	}
	defer log.Sync()

	store, err := openImportStore(cfg.State, f.dryRun)
	if err != nil {
		return err
	}
	// The user's upstream and key, as a session would take them (routes).
	mapStore := store
	if mapStore == nil {
		mapStore = uidmap.NewMemoryStore() // a dry run: the options' Map is not used
	}
	opts, err := daemon.BackendOptions(cfg, mapStore, log)
	if err != nil {
		return err
	}
	uo := opts.ForUser(f.user)
	key := uo.Key(f.user)
	upstream := uo.Dialer.Config()
	im := &uidmap.Importer{Store: store, Key: key, Force: f.force, DryRun: f.dryRun}
	if store != nil {
		defer store.Close()
		if _, err := im.Check(ctx); err != nil {
			if errors.Is(err, uidmap.ErrStateExists) {
				return fmt.Errorf("%w\n(nothing was changed; use -force to replace that state with the imported UIDLs)", err)
			}
			return err
		}
		lease, err := store.Lock(ctx, key, "import-uidl")
		if err != nil {
			if errors.Is(err, uidmap.ErrLocked) {
				return fmt.Errorf("%s has a POP3 session open on popbridge: try again when it has ended: %w", f.user, err)
			}
			return err
		}
		defer lease.Release()
		var done context.CancelFunc
		ctx, done = lease.Bound(ctx)
		defer done()
	}

	imapPass, pop3Pass, err := readImportPasswords(stdin, stderr, f, upstream.MasterUser != "")
	if err != nil {
		return err
	}

	// The upstream: one login as the user, SELECT, one snapshot.
	conn, err := uo.Dialer.Login(ctx, imapupstream.Credentials{Username: f.user, Password: imapPass})
	if err != nil {
		return fmt.Errorf("upstream %s: %w", upstream.Address, err)
	}
	defer conn.Close()
	md, err := proxy.OpenMaildrop(ctx, conn, nil, key) // names nothing: the import does
	if err != nil {
		return fmt.Errorf("upstream %s: %w", upstream.Address, err)
	}
	dst := md.ImportTarget()

	// The old server's listing.
	var src uidmap.ImportSource
	var srcName string
	if f.pop3Addr != "" {
		srcName = "POP3 server " + f.pop3Addr
		pc, err := dialOldPOP3(ctx, f, cfg, pop3Pass)
		if err != nil {
			return err
		}
		defer pc.Close()
		if src, err = pop3Source(pc); err != nil {
			return fmt.Errorf("old POP3 server %s: %w", f.pop3Addr, err)
		}
		defer func() {
			if err := pc.Quit(); err != nil {
				log.Debug("old POP3 server: QUIT", zap.Error(err))
			}
		}()
	} else {
		srcName = "dovecot-uidlist " + f.uidlist
		if src, err = maildir.Source(f.uidlist, format); err != nil {
			return err
		}
	}

	var res *uidmap.ImportResult
	if store != nil {
		res, err = im.Run(ctx, src, dst)
	} else {
		res, err = uidmap.MatchImport(ctx, src, dst)
	}
	if err != nil {
		return err
	}
	printImportReport(stdout, f, cfg, key, srcName, store != nil, src, dst, res)
	return nil
}

// openImportStore opens the state store. A dry run goes on without it when
// a running popbridge holds it (it then cannot say whether state exists).
func openImportStore(sc config.State, dryRun bool) (uidmap.Store, error) {
	if sc.Driver == "memory" {
		return nil, errors.New("state.driver memory keeps nothing after popbridge exits: import-uidl needs a persistent store (bolt or postgres)")
	}
	store, err := daemon.OpenStore(sc)
	if errors.Is(err, boltstore.ErrBusy) {
		if dryRun {
			return nil, nil
		}
		return nil, fmt.Errorf("%w\nThe state file belongs to one process: stop popbridge (popbridge serve) first, run import-uidl, then start popbridge again", err)
	}
	return store, err
}

// readImportPasswords reads what the command needs from stdin: the user's
// password (unless a master user logs in to the upstream and no POP3 server
// is asked), and the old POP3 server's own on the second line with
// -pop3-own-password. At a terminal it prompts, with echo off.
func readImportPasswords(stdin io.Reader, stderr io.Writer, f *importFlags, masterUser bool) (imapPass, pop3Pass string, err error) {
	var prompts []string
	needUser := !masterUser || (f.pop3Addr != "" && !f.pop3OwnPassword)
	if needUser {
		prompts = append(prompts, fmt.Sprintf("password of %s: ", f.user))
	}
	if f.pop3OwnPassword {
		prompts = append(prompts, fmt.Sprintf("password of %s on the old POP3 server %s: ", f.pop3User, f.pop3Addr))
	}
	if len(prompts) == 0 {
		return "", "", nil
	}
	var restore func()
	if file, ok := stdin.(*os.File); ok {
		if r, ok := noEcho(file); ok {
			restore = r
			defer restore()
		}
	}
	r := bufio.NewReader(stdin)
	lines := make([]string, len(prompts))
	for i, p := range prompts {
		if restore != nil {
			fmt.Fprint(stderr, p)
		}
		line, err := r.ReadString('\n')
		if err != nil && !(errors.Is(err, io.EOF) && line != "") {
			return "", "", fmt.Errorf("reading %s from standard input: none given (pipe it in, one line; never on the command line)", strings.TrimSuffix(p, ": "))
		}
		lines[i] = strings.TrimRight(line, "\r\n")
		if lines[i] == "" {
			return "", "", fmt.Errorf("%sempty line on standard input", p)
		}
	}
	if needUser {
		imapPass, pop3Pass = lines[0], lines[0]
	}
	if f.pop3OwnPassword {
		pop3Pass = lines[len(lines)-1]
	}
	return imapPass, pop3Pass, nil
}

// dialOldPOP3 connects and logs in to the old POP3 server, which may end
// lines with a bare LF.
func dialOldPOP3(ctx context.Context, f *importFlags, cfg *config.Config, password string) (*pop3client.Client, error) {
	o := &pop3client.Options{Timeout: cfg.Upstream.CommandTimeout, AllowBareLF: true}
	switch f.pop3TLS {
	case "starttls":
		o.TLS = pop3client.TLSStartTLS
	case "implicit":
		o.TLS = pop3client.TLSImplicit
	}
	if f.pop3TLS != "none" {
		host, _, _ := net.SplitHostPort(f.pop3Addr)
		tc := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12, InsecureSkipVerify: f.pop3Insecure}
		if f.pop3CA != "" {
			pem, err := os.ReadFile(f.pop3CA)
			if err != nil {
				return nil, fmt.Errorf("-pop3-ca: %w", err)
			}
			pool, err := x509.SystemCertPool()
			if err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("-pop3-ca %s: no PEM certificate in it", f.pop3CA)
			}
			tc.RootCAs = pool
		}
		o.TLSConfig = tc
	}
	c, err := pop3client.DialContext(ctx, f.pop3Addr, o)
	if errors.Is(err, pop3client.ErrNoSTLS) {
		err = fmt.Errorf("%w (the server offers no STLS: use -pop3-tls implicit, or none on a trusted network)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("old POP3 server %s: %w", f.pop3Addr, err)
	}
	c.Capa() // without CAPA, Login sends USER and PASS
	if err := c.Login(f.pop3User, password); err != nil {
		c.Close()
		return nil, fmt.Errorf("old POP3 server %s: login as %s: %w", f.pop3Addr, f.pop3User, err)
	}
	return c, nil
}

// pop3Source lists the old server's maildrop: UIDL and LIST, in message
// number order; headers (TOP n 0) only when the matching asks for them.
func pop3Source(c *pop3client.Client) (uidmap.ImportSource, error) {
	uidls, err := c.Listing("UIDL")
	if err != nil {
		return uidmap.ImportSource{}, fmt.Errorf("%w (without UIDL there are no UIDLs to import)", err)
	}
	sizes, err := c.Listing("LIST")
	if err != nil {
		return uidmap.ImportSource{}, err
	}
	size := make(map[int]int64, len(sizes))
	for _, e := range sizes {
		var n int64
		if _, err := fmt.Sscan(e.Value, &n); err == nil && n >= 0 {
			size[e.N] = n
		}
	}
	slices.SortFunc(uidls, func(a, b pop3client.Entry) int { return a.N - b.N })
	uidls = slices.CompactFunc(uidls, func(a, b pop3client.Entry) bool { return a.N == b.N })
	src := uidmap.ImportSource{Messages: make([]uidmap.OldMessage, len(uidls))}
	numbers := make([]int, len(uidls)) // index → message number
	for i, e := range uidls {
		s, ok := size[e.N]
		if !ok {
			s = -1
		}
		src.Messages[i] = uidmap.OldMessage{UIDL: e.Value, Size: s}
		numbers[i] = e.N
	}
	src.HeaderHashes = func(_ context.Context, idx []int) (map[int]string, error) {
		byNumber := make(map[int]int, len(idx))
		ns := make([]int, len(idx))
		for j, i := range idx {
			ns[j] = numbers[i]
			byNumber[numbers[i]] = i
		}
		out := make(map[int]string, len(idx))
		err := c.Headers(ns, imapupstream.MaxHeaderSize, func(n int, h []byte) {
			out[byNumber[n]] = uidmap.HeaderHash(h)
		})
		return out, err
	}
	return src, nil
}

// maxListed bounds the unmatched messages listed one by one.
const maxListed = 20

func printImportReport(w io.Writer, f *importFlags, cfg *config.Config, key uidmap.Key, srcName string, haveStore bool,
	src uidmap.ImportSource, dst uidmap.ImportTarget, res *uidmap.ImportResult) {
	fmt.Fprintf(w, "user: %s\n", f.user)
	fmt.Fprintf(w, "upstream: %s %s, UIDVALIDITY %d, %d messages\n", key.Upstream, key.Mailbox, dst.UIDValidity, len(dst.Messages))
	fmt.Fprintf(w, "old server: %s, %d messages", srcName, len(src.Messages))
	if src.UIDValidity != 0 {
		fmt.Fprintf(w, ", UIDVALIDITY %d", src.UIDValidity)
		if src.UIDValidity == dst.UIDValidity {
			fmt.Fprint(w, " (the same mailbox: matched by UID)")
		}
	}
	fmt.Fprintln(w)
	var passes []string
	for _, p := range []uidmap.MatchPass{uidmap.MatchUID, uidmap.MatchSizeOrder, uidmap.MatchHeaderSize, uidmap.MatchHeader} {
		if n := res.ByPass[p]; n > 0 {
			passes = append(passes, fmt.Sprintf("%s %d", p, n))
		}
	}
	fmt.Fprintf(w, "matched: %d", len(res.Matches))
	if len(passes) > 0 {
		fmt.Fprintf(w, " (%s)", strings.Join(passes, ", "))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "unmatched old messages: %d (no IMAP message matches: their UIDLs are not imported)\n", len(res.UnmatchedOld))
	for k, i := range res.UnmatchedOld {
		if k == maxListed {
			fmt.Fprintf(w, "  … and %d more\n", len(res.UnmatchedOld)-k)
			break
		}
		m := src.Messages[i]
		fmt.Fprintf(w, "  old #%d: UIDL %s, %d octets\n", i+1, m.UIDL, m.Size)
	}
	fmt.Fprintf(w, "unmatched IMAP messages: %d (no old UIDL: popbridge names them at the next login)\n", len(res.UnmatchedNew))
	sizes := make(map[uint32]int64, len(dst.Messages))
	for _, m := range dst.Messages {
		sizes[m.UID] = m.Size
	}
	for k, uid := range res.UnmatchedNew {
		if k == maxListed {
			fmt.Fprintf(w, "  … and %d more\n", len(res.UnmatchedNew)-k)
			break
		}
		fmt.Fprintf(w, "  IMAP UID %d: %d octets\n", uid, sizes[uid])
	}
	if len(res.Skipped) > 0 {
		fmt.Fprintf(w, "skipped old messages: %d\n", len(res.Skipped))
		for k, s := range res.Skipped {
			if k == maxListed {
				fmt.Fprintf(w, "  … and %d more\n", len(res.Skipped)-k)
				break
			}
			fmt.Fprintf(w, "  old #%d: %s\n", s.Old+1, s.Reason)
		}
	}
	switch {
	case !haveStore:
		fmt.Fprintf(w, "dry run: nothing written (state %s is in use by a running popbridge, so existing state was not checked: stop popbridge before the real import)\n", daemon.StoreName(cfg.State))
	case f.dryRun:
		fmt.Fprintf(w, "dry run: nothing written to %s", daemon.StoreName(cfg.State))
		if res.Existing > 0 {
			fmt.Fprintf(w, " (-force would replace %d stored UIDLs)", res.Existing)
		}
		fmt.Fprintln(w)
	case res.Written:
		fmt.Fprintf(w, "written: %d UIDLs to %s", len(res.Matches), daemon.StoreName(cfg.State))
		if res.Replaced {
			fmt.Fprintf(w, ", replacing %d stored", res.Existing)
		}
		fmt.Fprintln(w)
	default:
		fmt.Fprintln(w, "written: nothing (no message matched)")
	}
}
