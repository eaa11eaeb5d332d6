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

// Login implements pop3.Backend. The order matters: the upstream checks the
// credentials first (so an unauthenticated client never learns whether a
// maildrop is locked), then the lock is taken, the mailbox SELECTed and
// snapshotted and every message named. Only then does the client get +OK.
//
// A failed login is logged once, by the pop3 server, with the error chain
// returned here.
func (b *Backend) Login(ctx context.Context, ci *pop3.ConnInfo, cred *pop3.Credentials) (_ pop3.Session, err error) {
	start := time.Now()
	live := b.live.Load()
	log := b.log.With(zap.String("session", ci.ID), zap.String("user", cred.Username), zap.String("mechanism", cred.Mechanism))
	if cred.AuthzID != "" && cred.AuthzID != cred.Username {
		// Logging in as someone else needs the upstream's master-user
		// support, which is the operator's choice (upstream.master_user),
		// not the client's.
		return nil, &pop3.Error{Code: pop3.CodeAuth, Message: "authorization identity not allowed"}
	}
	// The client's address (the one a PROXY header carried, if any) goes
	// upstream in an ID command, so the IMAP server logs and rate-limits
	// the client rather than popbridge.
	// A device's login ("user#phone") is the user's upstream.
	user, device := splitDevice(cred.Username, live.DeviceSeparator)
	upCred := imapupstream.Credentials{Username: user, ClientAddr: ci.RemoteAddr, ConnectedAddr: ci.LocalAddr}
	switch cred.Mechanism {
	case "OAUTHBEARER", "XOAUTH2":
		upCred.Token, upCred.Mechanism = cred.Token, cred.Mechanism
	default:
		upCred.Password = cred.Password
	}
	verified := false // the user's own credentials were checked by the hook
	server := ""
	if live.Hook != nil {
		server, err = askHook(ctx, live.Hook, ci, cred, &upCred)
		if live.Observer != nil {
			live.Observer.HookAnswered(hookResult(err))
		}
		if err != nil {
			return nil, err
		}
		verified = true
		if upCred.Username != user {
			log = log.With(zap.String("upstream_user", upCred.Username))
		}
	}
	// One set of options for the whole session: its route's, if any, and
	// the server the hook chose.
	opts := live.ForUser(upCred.Username)
	if server != "" {
		opts = opts.withServer(server)
		log = log.With(zap.String("upstream", server))
	}
	if opts.Dialer.Config().MasterUser != "" && !verified {
		if !opts.VerifyUpstream {
			return nil, &pop3.Error{Code: pop3.CodeSysPerm, Message: "login not possible, contact your administrator", Err: errMasterUnverified}
		}
		// The master logs in as anyone: the user's own credentials are
		// checked first, by the upstream itself.
		if err := opts.Dialer.Verify(ctx, upCred); err != nil {
			return nil, clientError(err)
		}
	}
	conn, err := opts.Dialer.Login(ctx, upCred)
	if err != nil {
		return nil, clientError(err)
	}
	s := &session{
		id:     ci.ID,
		opts:   opts,
		conn:   conn,
		log:    log,
		key:    opts.Key(upCred.Username),
		device: device != "",
		seen:   make(map[uint32]struct{}),
	}
	shared := s.key // the user's maildrop: UIDLs
	if s.device {
		// The device's own view: lock, hidden marks, login delay.
		s.key = opts.DeviceKey(upCred.Username, device)
		log = log.With(zap.String("device", device))
		s.log = log
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if opts.LoginDelay > 0 {
		// After the credentials were checked: an unauthenticated client
		// learns nothing from it.
		if err := b.logins.check(s.key, opts.LoginDelay, time.Now()); err != nil {
			return nil, err
		}
	}
	if opts.Policy.Exclusive {
		lease, err := opts.Map.Store().Lock(ctx, s.key, ci.ID)
		if err != nil {
			if errors.Is(err, uidmap.ErrLocked) && opts.Observer != nil {
				opts.Observer.LockContended()
			}
			return nil, clientError(err)
		}
		s.lease = lease
	}
	md, err := OpenMaildrop(ctx, conn, opts.Map, shared)
	if err != nil {
		return nil, clientError(err)
	}
	metas, view := md.Metas, md.View
	if opts.Observer != nil {
		opts.Observer.Resolved(view)
	}
	if view.Reset {
		log.Warn("upstream UIDVALIDITY changed: messages re-identified", zap.Int("kept", view.Kept),
			zap.Int("assigned", view.Assigned), zap.Uint32("uidvalidity", md.UIDValidity))
	}
	hiddenMarks := view.Hidden
	switch {
	case s.device:
		marks, fresh, err := opts.Map.DeviceView(ctx, s.key, md.UIDValidity, md.Messages, view.UIDLs, opts.NewDeviceFromNow)
		if err != nil {
			return nil, clientError(err)
		}
		if fresh {
			log.Info("new device", zap.Bool("from_now", opts.NewDeviceFromNow))
		}
		hiddenMarks = marks
	case view.Fresh && opts.Policy.OnDele == OnDeleHide:
		// No state for this maildrop (first session, or the store was
		// lost): messages hidden before carry the keyword upstream.
		// (Devices' marks are never kept upstream: the keyword would hide
		// a message from every device.)
		if err := s.adoptHiddenKeyword(ctx, md.UIDValidity, metas, view); err != nil {
			return nil, clientError(err)
		}
	}
	idx, outside, err := listed(ctx, conn, md, hiddenMarks, opts.Window, time.Now())
	if err != nil {
		return nil, clientError(err)
	}
	s.uidValidity = md.UIDValidity
	s.uids = make([]uint32, len(idx))
	s.messages = make([]pop3.Message, len(idx))
	for n, i := range idx {
		s.uids[n] = metas[i].UID
		s.messages[n] = pop3.Message{Size: metas[i].Size, UIDL: view.UIDLs[i]}
	}
	if opts.LoginDelay > 0 {
		b.logins.done(s.key, opts.LoginDelay, time.Now())
	}
	log.Info("login", zap.Int("messages", len(s.messages)), zap.Int("hidden", len(metas)-len(idx)-outside),
		zap.Int("outside_window", outside), zap.Int("new", view.Assigned), zap.Uint32("uidvalidity", md.UIDValidity),
		zap.Duration("took", time.Since(start)))
	return s, nil
}

// Identifier lets uidmap fetch identities of new messages over conn; msgs
// is the listing they come from, which each answer must match.
func Identifier(conn *imapupstream.Conn, msgs []uidmap.Message) uidmap.Identifier {
	return func(ctx context.Context, uids []uint32) ([]uidmap.Identity, error) {
		ids, err := conn.Identify(ctx, Listed(msgs, uids))
		if err != nil {
			return nil, err
		}
		out := make([]uidmap.Identity, len(ids))
		for i, id := range ids {
			out[i] = uidmap.Identity{UID: id.UID, InternalDate: id.InternalDate, MessageID: id.MessageID, XUIDL: id.XUIDL, Header: id.Header}
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
