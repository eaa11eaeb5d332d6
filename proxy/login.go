package proxy

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/uidmap"
)

// authenticated is a login whose credentials are accepted: the options of
// its session (its route's, and the server a hook chose), the upstream
// login to make, and its device ("" for none).
type authenticated struct {
	opts   *Options
	upCred imapupstream.Credentials
	device string
	log    *zap.Logger
	// bearer, when set, gives upCred's token: the login goes upstream
	// with popbridge's OAuth2 access for the user (OAuth2Backend).
	bearer *bearer
}

// bearerFor is how a login finds popbridge's OAuth2 access to an upstream
// (by its UpstreamID): nil where the client's own credentials go upstream.
type bearerFor func(upstreamID string) tokenSource

// A tokenSource gives the access token of a user's upstream login, and
// another one when the upstream refused that one.
type tokenSource interface {
	token(ctx context.Context, upstreamID, user string) (string, error)
	refused(ctx context.Context, upstreamID, user, token string) (string, error)
	mechanism() string
	appOnly() bool // the tokens are popbridge's own, not the user's grant
}

// bearer is one login's token source and what it names.
type bearer struct {
	src              tokenSource
	upstreamID, user string
}

// authenticate checks what can be checked before the upstream login: the
// hook's verdict (which may rewrite the login and choose its server), and
// with a master user the user's own credentials.
//
// With bearers, a login whose upstream (chosen after the hook) takes
// popbridge's OAuth2 access goes there with the user's access token
// instead of the client's credentials, which the hook, or the caller, has
// verified.
func (b *Backend) authenticate(ctx context.Context, ci *pop3.ConnInfo, cred *pop3.Credentials, log *zap.Logger, bearers bearerFor) (*authenticated, error) {
	live := b.live.Load()
	// A device's login ("user#phone") is the user's upstream.
	user, device := splitDevice(cred.Username, live.DeviceSeparator)
	// The client's address (the one a PROXY header carried, if any) goes
	// upstream in an ID command, so the IMAP server logs and rate-limits
	// the client rather than popbridge.
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
		var err error
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
	var bt *bearer
	if bearers != nil && upCred.Token == "" {
		if src := bearers(opts.UpstreamID); src != nil {
			bt = &bearer{src: src, upstreamID: opts.UpstreamID, user: upCred.Username}
			tok, err := src.token(ctx, bt.upstreamID, bt.user)
			if err != nil {
				return nil, err
			}
			upCred.Password, upCred.Token, upCred.Mechanism = "", tok, src.mechanism()
		}
	}
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
	return &authenticated{opts: opts, upCred: upCred, device: device, log: log, bearer: bt}, nil
}

// dial logs in upstream through d as a says. An access token of popbridge's that
// the upstream refuses (the provider revoked it before its expiry) is
// replaced once, and the login tried again.
func (a *authenticated) dial(ctx context.Context, d *imapupstream.Dialer) (*imapupstream.Conn, error) {
	conn, err := d.Login(ctx, a.upCred)
	if a.bearer == nil || !errors.Is(err, imapupstream.ErrAuthFailed) {
		return conn, err
	}
	bt := a.bearer
	next, rerr := bt.src.refused(ctx, bt.upstreamID, bt.user, a.upCred.Token)
	if rerr != nil {
		return nil, rerr
	}
	if next != a.upCred.Token {
		a.upCred.Token = next
		conn, err = d.Login(ctx, a.upCred)
	}
	if errors.Is(err, imapupstream.ErrAuthFailed) {
		// Refused with a new token too: the mailbox does not take
		// popbridge's access, or the grant lacks its scope.
		return nil, &pop3.Error{Code: pop3.CodeAuth, Err: err, Message: refusedText(bt)}
	}
	return conn, err
}

// open makes s, logged in upstream, a session: the login delay and the
// maildrop lock of its view, the mailbox selected and snapshotted, every
// message named in the shared maildrop, and its listing.
func (b *Backend) open(ctx context.Context, s *session, shared uidmap.Key, start time.Time) error {
	if err := b.claim(ctx, s, true); err != nil {
		return err
	}
	md, err := snapshotMaildrop(ctx, s.conn, shared, &b.snaps)
	if err != nil {
		return clientError(err)
	}
	if err := md.Name(ctx, s.opts.Map, nil); err != nil {
		return clientError(err)
	}
	if err := s.view(ctx, md); err != nil {
		return err
	}
	b.loggedIn(ctx, s, md, start)
	return nil
}

// claim takes what a session of s's view must hold before it reads the
// maildrop: the login delay (when delay is set: for a session of several
// folders, once) and the maildrop lock.
func (b *Backend) claim(ctx context.Context, s *session, delay bool) error {
	opts := s.opts
	if delay && opts.LoginDelay > 0 {
		// After the credentials were checked: an unauthenticated client
		// learns nothing from it.
		if err := b.checkLoginDelay(ctx, opts, s.key); err != nil {
			return err
		}
	}
	if opts.Policy.Exclusive {
		lease, err := opts.Map.Store().Lock(ctx, s.key, s.id)
		if err != nil {
			if errors.Is(err, uidmap.ErrLocked) && opts.Observer != nil {
				opts.Observer.LockContended()
			}
			return clientError(err)
		}
		s.lease = lease
	}
	return nil
}

// view makes s's listing of the named maildrop md: what its view (the
// user's marks, or its device's) does not hide and the window leaves.
func (s *session) view(ctx context.Context, md *Maildrop) error {
	opts, log := s.opts, s.log
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
			return clientError(err)
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
			return clientError(err)
		}
	}
	idx, outside, err := listed(ctx, s.conn, md, hiddenMarks, opts.Window, time.Now())
	if err != nil {
		return clientError(err)
	}
	s.uidValidity = md.UIDValidity
	s.uids = make([]uint32, len(idx))
	s.messages = make([]pop3.Message, len(idx))
	for n, i := range idx {
		s.uids[n] = metas[i].UID
		s.messages[n] = pop3.Message{Size: metas[i].Size, UIDL: view.UIDLs[i]}
	}
	s.outside = outside
	return nil
}

// loggedIn records and logs a login whose view s made of md.
func (b *Backend) loggedIn(ctx context.Context, s *session, md *Maildrop, start time.Time) {
	if s.opts.LoginDelay > 0 {
		b.recordLogin(ctx, s.opts, s.key, s.log)
	}
	s.log.Info("login", zap.Int("messages", len(s.messages)), zap.Int("hidden", len(md.Metas)-len(s.messages)-s.outside),
		zap.Int("outside_window", s.outside), zap.Int("new", md.View.Assigned), zap.Uint32("uidvalidity", md.UIDValidity),
		zap.Bool("snapshot_cached", md.Cached),
		zap.Duration("took", time.Since(start)))
}
