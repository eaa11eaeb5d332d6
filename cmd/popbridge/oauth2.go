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
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/popbridge/popbridge/internal/apppass"
	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/daemon"
	"github.com/popbridge/popbridge/internal/grants"
	"github.com/popbridge/popbridge/internal/oauth2user"
	"github.com/popbridge/popbridge/uidmap"
	"github.com/popbridge/popbridge/uidmap/boltstore"
)

const oauth2Usage = `usage: popbridge oauth2 enroll [-config FILE] [-label DEVICE] [-no-password] [-timeout D] [-code [-redirect-url URL]] USER
       popbridge oauth2 passwords [-config FILE] [-add DEVICE | -revoke ID | -revoke-all] USER
       popbridge oauth2 status [-config FILE] USER
       popbridge oauth2 forget [-config FILE] USER`

// cmdOAuth2 is `popbridge oauth2 enroll|passwords|status|forget USER`: a
// user's upstream OAuth2 grant and the app passwords of their POP3 devices.
// With app-only access (upstream.oauth2.grant client_credentials or
// service_account) there is no grant to approve: enroll checks that the
// provider gives the app a token and makes the first app password.
func cmdOAuth2(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(oauth2Usage)
	}
	verb := args[0]
	if verb == "-h" || verb == "-help" || verb == "--help" || verb == "help" {
		verb = "enroll" // its flag set has every flag
		args = []string{verb, "-h"}
		fmt.Fprintln(stderr, oauth2Usage)
	}
	fs := flag.NewFlagSet("oauth2 "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := configFlag(fs)
	label := fs.String("label", "device", "enroll: the label of the first app password (the device it is for)")
	noPassword := fs.Bool("no-password", false, "enroll: make no app password (the user has some)")
	timeout := fs.Duration("timeout", 15*time.Minute, "enroll: how long to wait for the user to approve")
	code := fs.Bool("code", false, "enroll: the authorization-code flow (the address the browser ends at is pasted back on stdin) instead of the device flow; Google always takes it")
	redirect := fs.String("redirect-url", grants.DefaultRedirectURL, "enroll -code: the registered loopback redirect URI")
	add := fs.String("add", "", "passwords: make a new app password labelled with this device")
	revoke := fs.String("revoke", "", "passwords: revoke the app password of this ID")
	revokeAll := fs.Bool("revoke-all", false, "passwords: revoke every app password of the user")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("oauth2 %s: want exactly one USER\n%s", verb, oauth2Usage)
	}
	name := fs.Arg(0)
	cfg, err := config.Load(*path, os.Environ())
	if err != nil {
		return err
	}
	user, err := openOAuth2User(cfg, name, oauth2user.Options{})
	if errors.Is(err, boltstore.ErrBusy) {
		return fmt.Errorf("%w: stop popbridge first (the bolt store belongs to one process)", err)
	}
	if err != nil {
		return err
	}
	defer user.Close()

	switch verb {
	case "enroll":
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		if user.Grants.App() {
			return oauth2EnrollApp(ctx, user, *label, !*noPassword, stdout)
		}
		if *code || user.Provider.CheckDeviceFlow() != nil {
			return oauth2EnrollCode(ctx, user, *redirect, *label, !*noPassword, stdin, stdout)
		}
		return oauth2Enroll(ctx, user, *label, !*noPassword, stdout)
	case "passwords":
		return oauth2Passwords(ctx, user, *add, *revoke, *revokeAll, stdout)
	case "status":
		return oauth2Status(ctx, user, stdout)
	case "forget":
		return oauth2Forget(ctx, user, stdout)
	default:
		return fmt.Errorf("oauth2: unknown verb %q\n%s", verb, oauth2Usage)
	}
}

func oauth2Enroll(ctx context.Context, u *oauth2user.User, label string, password bool, w io.Writer) error {
	err := u.Grants.EnrollDevice(ctx, u.GrantKey(), func(da *oauth2.DeviceAuthResponse) error {
		fmt.Fprintf(w, "To give popbridge access to the mailbox of %s on %s, sign in as that user at\n\n  %s\n\nand enter the code %s", u.Name, u.Upstream, da.VerificationURI, da.UserCode)
		if !da.Expiry.IsZero() {
			fmt.Fprintf(w, " (valid until %s)", da.Expiry.Format("15:04:05"))
		}
		fmt.Fprintf(w, ".\n")
		if da.VerificationURIComplete != "" {
			fmt.Fprintf(w, "Or open %s\n", da.VerificationURIComplete)
		}
		fmt.Fprintf(w, "Waiting for the approval...\n")
		return nil
	})
	if err != nil {
		return err
	}
	return oauth2Enrolled(ctx, u, label, password, w)
}

// oauth2EnrollApp is enroll where popbridge has app-only access: nobody
// approves anything, so enroll checks that the provider gives the app a
// token for the user and makes the user's first app password.
func oauth2EnrollApp(ctx context.Context, u *oauth2user.User, label string, password bool, w io.Writer) error {
	if _, err := u.Grants.AccessToken(ctx, u.GrantKey()); err != nil {
		return fmt.Errorf("%s on %s: %w", u.Name, u.Upstream, err)
	}
	fmt.Fprintf(w, "popbridge has app-only access to %s (%s): the provider issued a token, no approval needed.\n", u.Upstream, u.Provider.Name)
	fmt.Fprintf(w, "Whether the mailbox of %s admits the app is the mail server's decision: the first POP3 login will tell.\n", u.Name)
	if !password {
		return nil
	}
	return oauth2AddPassword(ctx, u, label, w)
}

// oauth2EnrollCode is enroll by the authorization-code flow: the person
// opens the URL anywhere, approves, and pastes back the address the
// browser was sent to (a loopback page that does not load).
func oauth2EnrollCode(ctx context.Context, u *oauth2user.User, redirect, label string, password bool, stdin io.Reader, w io.Writer) error {
	e := u.Grants.StartAuthCode(redirect)
	fmt.Fprintf(w, "To give popbridge access to the mailbox of %s on %s, open in any browser\n\n  %s\n\n", u.Name, u.Upstream, e.URL)
	fmt.Fprintf(w, "sign in as that user and approve. The browser then goes to %s..., which does not load:\n", redirect)
	fmt.Fprintf(w, "copy that whole address from the address bar and paste it here:\n")
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && strings.TrimSpace(line) == "" {
		return fmt.Errorf("reading the address: %w", err)
	}
	if err := u.Grants.FinishAuthCode(ctx, u.GrantKey(), e, strings.TrimSpace(line)); err != nil {
		return err
	}
	return oauth2Enrolled(ctx, u, label, password, w)
}

// oauth2Enrolled reports a new grant and makes the first app password.
func oauth2Enrolled(ctx context.Context, u *oauth2user.User, label string, password bool, w io.Writer) error {
	g, err := u.Grants.Grant(ctx, u.GrantKey())
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Enrolled %s: %v.\n", u.Name, g)
	if !password {
		return nil
	}
	return oauth2AddPassword(ctx, u, label, w)
}

func oauth2AddPassword(ctx context.Context, u *oauth2user.User, label string, w io.Writer) error {
	pw, p, err := u.Passwords.Create(ctx, u.PasswordKey(), label)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "App password %s for %q: %s\n", p.ID, label, pw)
	fmt.Fprintf(w, "It is shown once: set it as the POP3 password of that device (user name %s).\n", u.Name)
	return nil
}

func oauth2Passwords(ctx context.Context, u *oauth2user.User, add, revoke string, revokeAll bool, w io.Writer) error {
	k := u.PasswordKey()
	switch {
	case add != "":
		return oauth2AddPassword(ctx, u, add, w)
	case revoke != "":
		if err := u.Passwords.Revoke(ctx, k, revoke); err != nil {
			if errors.Is(err, apppass.ErrNotFound) {
				return fmt.Errorf("%s has no app password %s", u.Name, revoke)
			}
			return err
		}
		fmt.Fprintf(w, "Revoked app password %s of %s.\n", revoke, u.Name)
		return nil
	case revokeAll:
		n, err := u.Passwords.RevokeAll(ctx, k)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "Revoked %d app passwords of %s.\n", n, u.Name)
		return nil
	}
	list, err := u.Passwords.List(ctx, k)
	if err != nil {
		return err
	}
	if len(list) == 0 {
		fmt.Fprintf(w, "%s has no app passwords.\n", u.Name)
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDEVICE\tCREATED\tLAST USED")
	for _, p := range list {
		used := "never"
		if !p.LastUsed.IsZero() {
			used = p.LastUsed.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.ID, p.Label, p.Created.Format(time.RFC3339), used)
	}
	return tw.Flush()
}

func oauth2Status(ctx context.Context, u *oauth2user.User, w io.Writer) error {
	if u.Grants.App() {
		return oauth2StatusApp(ctx, u, w)
	}
	g, err := u.Grants.Grant(ctx, u.GrantKey())
	if errors.Is(err, grants.ErrNoGrant) {
		fmt.Fprintf(w, "%s is not enrolled on %s: popbridge oauth2 enroll %s\n", u.Name, u.Upstream, u.Name)
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s on %s (%s): %v, enrolled %s", u.Name, u.Upstream, u.Provider.Name, g, g.Enrolled.Format(time.RFC3339))
	if !g.Refreshed.IsZero() {
		fmt.Fprintf(w, ", last refreshed %s", g.Refreshed.Format(time.RFC3339))
	}
	fmt.Fprintln(w)
	if g.Broken != "" {
		fmt.Fprintf(w, "The provider refused the grant: enrol the user again (popbridge oauth2 enroll %s).\n", u.Name)
	}
	return nil
}

// oauth2StatusApp is status with app-only access: the app's token (the
// user's own, for a service account) and the user's app passwords.
func oauth2StatusApp(ctx context.Context, u *oauth2user.User, w io.Writer) error {
	fmt.Fprintf(w, "%s on %s (%s): app-only access, no enrolment; ", u.Name, u.Upstream, u.Provider.Name)
	g, err := u.Grants.Grant(ctx, u.GrantKey())
	switch {
	case err != nil:
		return err
	case g.AccessToken == "":
		fmt.Fprintln(w, "no token fetched yet.")
	default:
		fmt.Fprintf(w, "token: %v, fetched %s.\n", g, g.Refreshed.Format(time.RFC3339))
	}
	list, err := u.Passwords.List(ctx, u.PasswordKey())
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%d app passwords (popbridge oauth2 passwords %s).\n", len(list), u.Name)
	return nil
}

// oauth2Forget removes the user's grant and app passwords (offboarding):
// the provider's side of the grant is revoked at the provider.
func oauth2Forget(ctx context.Context, u *oauth2user.User, w io.Writer) error {
	n, err := u.Passwords.RevokeAll(ctx, u.PasswordKey())
	if err != nil {
		return err
	}
	if u.Grants.App() {
		// The app's access is not the user's to forget: the mail
		// server's permissions say whose mailbox it opens.
		fmt.Fprintf(w, "Revoked the %d app passwords of %s on %s (popbridge's app-only access stays: remove the user's mailbox from the app's permissions at the provider).\n", n, u.Name, u.Upstream)
		return nil
	}
	if err := u.Grants.Delete(ctx, u.GrantKey()); err != nil {
		return err
	}
	fmt.Fprintf(w, "Forgot the OAuth2 grant and %d app passwords of %s on %s (revoke popbridge's access at the provider too).\n", n, u.Name, u.Upstream)
	return nil
}

// migrateOAuth2 is `state migrate`'s part for OAuth2: the users' sealed
// grants and their app passwords' hashes.
func migrateOAuth2(ctx context.Context, dst uidmap.Store, src *boltstore.Store, w io.Writer) error {
	gdst, ok1 := dst.(grants.Store)
	pdst, ok2 := dst.(apppass.Store)
	if !ok1 || !ok2 {
		return errors.New("state migrate: the destination keeps no OAuth2 grants")
	}
	gkeys, err := src.Grants(ctx)
	if err != nil {
		return err
	}
	res, err := grants.Copy(ctx, gdst, src, gkeys)
	if err != nil {
		return err
	}
	pkeys, err := src.AppPasswordUsers(ctx)
	if err != nil {
		return err
	}
	n, err := apppass.Copy(ctx, pdst, src, pkeys)
	if err != nil {
		return err
	}
	if res.Copied+len(res.Present)+n == 0 {
		return nil
	}
	fmt.Fprintf(w, "copied %d OAuth2 grants (still sealed: keep the same state.secret_file) and %d app passwords\n", res.Copied, n)
	for _, k := range res.Present {
		fmt.Fprintf(w, "OAuth2 grant not copied, PostgreSQL has one for it already: %s on %s\n", k.User, k.Upstream)
	}
	return nil
}

// openOAuth2User opens name's OAuth2 state in the configured store, on the
// upstream a session of name would log in to (its route's).
func openOAuth2User(cfg *config.Config, name string, opts oauth2user.Options) (*oauth2user.User, error) {
	store, err := daemon.OpenStore(cfg.State)
	if err != nil {
		return nil, err
	}
	bo, err := daemon.BackendOptions(cfg, store, zap.NewNop())
	if err != nil {
		store.Close()
		return nil, err
	}
	if user, device := bo.Device(name); device != "" {
		store.Close()
		return nil, fmt.Errorf("%s is a device of %s: the OAuth2 grant and the app passwords are the user's (an app password per device: oauth2 passwords -add DEVICE %s)", name, user, user)
	}
	return oauth2user.Open(cfg, store, bo.ForUser(name).UpstreamID, name, opts)
}
