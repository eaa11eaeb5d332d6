package proxy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/uidmap"
)

// Options configure a Backend.
type Options struct {
	Dialer *imapupstream.Dialer
	// UpstreamID names the upstream in uidmap keys (its address), so that
	// two upstreams' users never share state.
	UpstreamID string
	Mailbox    string
	// Routes send the users of other mail domains to other upstreams;
	// users without a domain or whose domain has no route use Dialer.
	Routes []Route
	Map    *uidmap.Map
	Policy Policy
	Logger *zap.Logger
	// Observer, when not nil, is told what uidmap named and of lock
	// contention, for metrics.
	Observer Observer
	// Hook, when not nil, decides every login before the upstream does:
	// it may refuse it, rewrite the user and password, and choose the
	// IMAP server (see internal/authhook). The route is that of the user
	// it answers with.
	Hook Hook
	// VerifyUpstream makes a login through an upstream master user first
	// log in as the user, with the user's own credentials, to check them
	// (auth.verify: upstream). A master user needs this or a Hook.
	VerifyUpstream bool
	// DeviceSeparator, when set, makes a login "user<sep>device" one
	// device of user: the upstream login is user's and so are the UIDLs,
	// but the device has its own hidden marks, lock and login delay
	// (policy.device_separator).
	DeviceSeparator string
	// NewDeviceFromNow hides, at a device's first login, every message
	// already there: a new device gets only mail from then on
	// (policy.new_device: from_now).
	NewDeviceFromNow bool
	// Window limits what every session lists (policy.window).
	Window Window
	// LoginDelay is the least time between two logins of one maildrop
	// view (a user, or a device), limits.login_delay; 0 for none.
	LoginDelay time.Duration
	// Folders, when it names more than one mailbox, makes them one POP3
	// maildrop, in this order, instead of Mailbox (policy.folders; see
	// folders.go).
	Folders []string
}

// Route is another upstream for the users of one mail domain: everything
// of Options that depends on the upstream, for them.
type Route struct {
	// Domain is compared, case-insensitively and exactly, with what
	// follows the last '@' of the user name.
	Domain string
	Dialer *imapupstream.Dialer
	// UpstreamID names the route's upstream in uidmap keys; "" is the
	// Dialer's address.
	UpstreamID string
	// Mailbox names the maildrop in uidmap keys; "" is the Dialer's
	// mailbox (the one it SELECTs).
	Mailbox string
	// OnDele and TrashMailbox replace Policy's; "" keeps Policy's.
	OnDele       OnDele
	TrashMailbox string
}

// route returns the route of user's domain, nil for the default upstream.
func (o *Options) route(user string) *Route {
	at := strings.LastIndexByte(user, '@')
	if at < 0 {
		return nil
	}
	domain := user[at+1:]
	for i := range o.Routes {
		if strings.EqualFold(o.Routes[i].Domain, domain) {
			return &o.Routes[i]
		}
	}
	return nil
}

// ForUser returns the options of a session of user: o itself, or o with
// its route's upstream and policy. The subcommands that act on one user's
// maildrop (state, import-uidl) take the upstream and key from it too.
func (o *Options) ForUser(user string) *Options {
	r := o.route(user)
	if r == nil {
		return o
	}
	ro := *o
	ro.Dialer, ro.UpstreamID, ro.Mailbox = r.Dialer, r.UpstreamID, r.Mailbox
	if r.OnDele != "" {
		ro.Policy.OnDele = r.OnDele
	}
	if r.TrashMailbox != "" {
		ro.Policy.TrashMailbox = r.TrashMailbox
	}
	return &ro
}

// Key names user's maildrop in uidmap under o (after ForUser, under the
// user's route).
func (o *Options) Key(user string) uidmap.Key {
	return uidmap.Key{Upstream: o.UpstreamID, User: user, Mailbox: o.Mailbox}
}

// Observer is told of events of the proxy's own, for metrics. Its methods
// are called from many sessions at once and must return quickly.
type Observer interface {
	// Resolved: a login named the maildrop's messages; v.Assigned new
	// UIDLs were given, v.Kept were re-identified after a UIDVALIDITY
	// change.
	Resolved(v *uidmap.View)
	// LockContended: a login was refused [IN-USE] because another session
	// holds the maildrop lock.
	LockContended()
	// LeaseLost: a session lost its maildrop lock (a shared store could
	// not renew it in time) and was ended without writing.
	LeaseLost()
	// HookAnswered: the auth hook answered a login with result, one of
	// HookOK, HookRefused, HookUnavailable.
	HookAnswered(result string)
}

// Backend implements pop3.Backend on an IMAP upstream.
type Backend struct {
	live   atomic.Pointer[Options] // the options of new sessions
	log    *zap.Logger
	logins loginTimes // for Options.LoginDelay
	snaps  snapshots  // the last snapshot of each maildrop
}

var _ pop3.Backend = (*Backend)(nil)

// New returns a Backend.
func New(opts Options) (*Backend, error) {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	b := &Backend{log: log}
	if err := b.Reconfigure(opts); err != nil {
		return nil, err
	}
	return b, nil
}

// Reconfigure makes opts the options of the sessions that log in from now
// on (a configuration reload); open sessions keep the options they started
// with. Logger is not changed. UpstreamID and Mailbox name maildrops in
// uidmap and should stay the same (a route's too: changing it gives its
// users new state).
func (b *Backend) Reconfigure(opts Options) error {
	if opts.Dialer == nil || opts.Map == nil {
		return errors.New("proxy: Dialer and Map are required")
	}
	if opts.Mailbox == "" {
		opts.Mailbox = "INBOX"
	}
	if opts.Policy.OnDele == "" {
		opts.Policy.OnDele = OnDeleExpunge
	}
	opts.Routes = slices.Clone(opts.Routes)
	for i := range opts.Routes {
		r := &opts.Routes[i]
		if r.Domain == "" || r.Dialer == nil {
			return fmt.Errorf("proxy: route %d: Domain and Dialer are required", i)
		}
		if r.UpstreamID == "" {
			r.UpstreamID = r.Dialer.Config().Address
		}
		if r.Mailbox == "" {
			r.Mailbox = r.Dialer.Config().Mailbox
		}
	}
	b.live.Store(&opts)
	return nil
}

// Options returns the options new sessions use.
func (b *Backend) Options() Options { return *b.live.Load() }

// Login implements pop3.Backend. The order matters: the credentials are
// checked first (by the hook or the upstream, so an unauthenticated client
// never learns whether a maildrop is locked), then the login delay, the
// lock, and the mailbox is SELECTed and snapshotted and every message
// named. Only then does the client get +OK.
//
// A failed login is logged once, by the pop3 server, with the error chain
// returned here.
func (b *Backend) Login(ctx context.Context, ci *pop3.ConnInfo, cred *pop3.Credentials) (pop3.Session, error) {
	return b.login(ctx, ci, cred, nil)
}

// login is Login, with popbridge's OAuth2 access to the upstreams that
// bearers names (OAuth2Backend).
func (b *Backend) login(ctx context.Context, ci *pop3.ConnInfo, cred *pop3.Credentials, bearers bearerFor) (_ pop3.Session, err error) {
	start := time.Now()
	if cred.AuthzID != "" && cred.AuthzID != cred.Username {
		// Logging in as someone else needs the upstream's master-user
		// support, which is the operator's choice (upstream.master_user),
		// not the client's.
		return nil, &pop3.Error{Code: pop3.CodeAuth, Message: "authorization identity not allowed"}
	}
	log := b.log.With(zap.String("session", ci.ID), zap.String("user", cred.Username), zap.String("mechanism", cred.Mechanism))
	a, err := b.authenticate(ctx, ci, cred, log, bearers)
	if err != nil {
		return nil, err
	}
	if len(a.opts.Folders) > 1 {
		return b.loginFolders(ctx, ci, a, start)
	}
	conn, err := a.dial(ctx, a.opts.Dialer)
	if err != nil {
		return nil, clientError(err)
	}
	a.warnUnmet(conn)
	s := newSession(ci.ID, a.opts, conn, a)
	if err := b.open(ctx, s, a.opts.Key(a.upCred.Username), start); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// newSession is the session of login a on conn, with opts (the login's, or
// one folder's): its view is the user's maildrop, or its device's.
func newSession(id string, opts *Options, conn *imapupstream.Conn, a *authenticated) *session {
	s := &session{
		id:     id,
		opts:   opts,
		conn:   conn,
		log:    a.log,
		key:    opts.Key(a.upCred.Username),
		device: a.device != "",
		seen:   make(map[uint32]struct{}),
	}
	if s.device {
		// The device's own view: lock, hidden marks, login delay.
		s.key = opts.DeviceKey(a.upCred.Username, a.device)
		s.log = s.log.With(zap.String("device", a.device))
	}
	return s
}

// warnUnmet logs when the upstream behind conn cannot give what the UIDL
// format needs: which server is behind an address shows only now.
func (a *authenticated) warnUnmet(conn *imapupstream.Conn) {
	if a.opts.Map == nil {
		return
	}
	if err := a.opts.Map.Needs().Unmet(conn.Caps().Has); err != nil {
		a.log.Warn("policy.uidl_format", zap.Error(err))
	}
}

// Identifier lets uidmap fetch identities of new messages over conn; msgs
// is the listing they come from, which each answer must match; needs is
// what the UIDL format needs besides (Map.Needs).
func Identifier(conn *imapupstream.Conn, msgs []uidmap.Message, needs uidmap.Needs) uidmap.Identifier {
	opts := imapupstream.IdentifyOptions{GmailMsgID: needs.GmailMsgID}
	return func(ctx context.Context, uids []uint32) ([]uidmap.Identity, error) {
		ids, err := conn.IdentifyWith(ctx, Listed(msgs, uids), opts)
		if err != nil {
			return nil, err
		}
		out := make([]uidmap.Identity, len(ids))
		for i, id := range ids {
			out[i] = uidmap.Identity{UID: id.UID, InternalDate: id.InternalDate, MessageID: id.MessageID, XUIDL: id.XUIDL,
				Header: id.Header, GmailMsgID: id.GmailMsgID}
		}
		return out, nil
	}
}

// Listed returns the messages of msgs whose UIDs are in uids, as the
// upstream listed them.
func Listed(msgs []uidmap.Message, uids []uint32) []imapupstream.MessageMeta {
	size := make(map[uint32]int64, len(msgs))
	for _, m := range msgs {
		size[m.UID] = m.Size
	}
	out := make([]imapupstream.MessageMeta, 0, len(uids))
	for _, uid := range uids {
		if sz, ok := size[uid]; ok {
			out = append(out, imapupstream.MessageMeta{UID: uid, Size: sz})
		}
	}
	return out
}
