package daemon

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/internal/authhook"
	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/grants"
	"github.com/popbridge/popbridge/internal/oauth2user"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/uidmap"
)

var tlsModes = map[string]pop3.TLSMode{
	"none":     pop3.TLSNone,
	"":         pop3.TLSNone,
	"starttls": pop3.TLSStartTLS,
	"implicit": pop3.TLSImplicit,
}

// NewDialer builds the upstream dialer from the upstream: section, for the
// subcommands that log in to the upstream themselves (state mark-old,
// import-uidl).
func NewDialer(u config.Upstream, log *zap.Logger) (*imapupstream.Dialer, error) {
	return newDialerObserved(u, log, nil)
}

// newDialerObserved is NewDialer reporting to obs (nil: nothing).
func newDialerObserved(u config.Upstream, log *zap.Logger, obs imapupstream.Observer) (*imapupstream.Dialer, error) {
	return imapupstream.NewDialer(imapupstream.Config{
		Address:            u.Address,
		TLS:                imapupstream.TLSMode(u.TLS),
		CAFile:             u.CAFile,
		InsecureSkipVerify: u.InsecureSkipVerify,
		Mailbox:            u.Mailbox,
		ConnectTimeout:     u.ConnectTimeout,
		CommandTimeout:     u.CommandTimeout,
		MasterUser:         u.MasterUser,
		MasterPassword:     u.MasterPassword,
		MasterSeparator:    u.MasterSeparator,
		Observer:           obs,
	}, log)
}

// backendOptions builds the proxy's options (new upstream dialers, the
// routes' included) from cfg.
func (d *daemon) backendOptions(cfg *config.Config) (proxy.Options, error) {
	var upObs imapupstream.Observer
	var pxObs proxy.Observer
	if d.metrics != nil {
		upObs, pxObs = d.metrics.Upstream(), d.metrics.Proxy()
	}
	return backendOptions(cfg, d.store, d.log, upObs, pxObs)
}

// BackendOptions builds the proxy's options from cfg on store, as serve
// does, for the subcommands that act on one user's maildrop as a session
// would (their upstream, route and key: proxy.Options.ForUser).
func BackendOptions(cfg *config.Config, store uidmap.Store, log *zap.Logger) (proxy.Options, error) {
	return backendOptions(cfg, store, log, nil, nil)
}

func backendOptions(cfg *config.Config, store uidmap.Store, log *zap.Logger, upObs imapupstream.Observer, pxObs proxy.Observer) (proxy.Options, error) {
	u := cfg.Upstream
	dialer, err := newDialerObserved(u, log.Named("upstream"), upObs)
	if err != nil {
		return proxy.Options{}, err
	}
	onDele, err := proxy.ParseOnDele(cfg.Policy.OnDele)
	if err != nil {
		return proxy.Options{}, err
	}
	routes := make([]proxy.Route, 0, len(cfg.Routes))
	for i, r := range cfg.Routes {
		rd, err := newDialerObserved(r.Upstream, log.Named("upstream").With(zap.String("route", r.Domain)), upObs)
		if err != nil {
			return proxy.Options{}, fmt.Errorf("routes.%d.upstream: %w", i, err)
		}
		rOnDele, err := proxy.ParseOnDele(r.Policy.OnDele)
		if err != nil {
			return proxy.Options{}, fmt.Errorf("routes.%d: %w", i, err)
		}
		routes = append(routes, proxy.Route{Domain: r.Domain, Dialer: rd, UpstreamID: r.Upstream.Address,
			Mailbox: r.Mailbox, OnDele: rOnDele, TrashMailbox: r.Policy.TrashMailbox})
	}
	format, err := uidmap.ParseFormat(cfg.Policy.UIDLFormat)
	if err != nil {
		return proxy.Options{}, err
	}
	var hook proxy.Hook
	if h := cfg.Auth.HTTPHook; h.URL != "" {
		c, err := authhook.New(authhook.Config{URL: h.URL, Timeout: h.Timeout, CAFile: h.CAFile, Headers: h.Headers})
		if err != nil {
			return proxy.Options{}, fmt.Errorf("auth.http_hook: %w", err)
		}
		hook = c
	}
	return proxy.Options{
		Dialer:     dialer,
		UpstreamID: u.Address,
		Mailbox:    u.Mailbox,
		Routes:     routes,
		Map:        uidmap.New(store, uidmap.Options{Format: format, ReuseXUIDL: cfg.Policy.ReuseXUIDL}),
		Policy: proxy.Policy{
			OnDele:       onDele,
			TrashMailbox: cfg.Policy.TrashMailbox,
			MarkSeen:     cfg.Policy.MarkSeen,
			Exclusive:    cfg.Policy.Lock == "exclusive",
		},
		Logger:         log,
		Observer:       pxObs,
		Hook:           hook,
		VerifyUpstream: cfg.Auth.Verify == "upstream",

		DeviceSeparator:  cfg.Policy.DeviceSeparator,
		NewDeviceFromNow: cfg.Policy.NewDevice == "from_now",
		Window: proxy.Window{Newest: cfg.Policy.Window.Newest, Since: time.Duration(cfg.Policy.Window.Since),
			MaxSize: cfg.Policy.Window.MaxSize},
		LoginDelay: cfg.Limits.LoginDelay,
		Folders:    cfg.Policy.Folders,
	}, nil
}

// oauth2Upstreams are the OAuth2 upstreams of cfg (upstream.oauth2 blocks),
// their refreshes logged and counted.
func (d *daemon) oauth2Upstreams(cfg *config.Config) (map[string]*proxy.OAuth2Upstream, error) {
	var count func(grants.Key, grants.Outcome, error)
	if d.metrics != nil {
		count = d.metrics.OAuth2Refresh
	}
	return oauth2user.Upstreams(cfg, d.store, oauth2user.ObserveRefreshes(d.log.Named("oauth2"), count))
}

// pop3Settings are the pop3.Server settings of cfg that a reload may
// change.
func pop3Settings(cfg *config.Config) pop3.Settings {
	return pop3.Settings{
		FailureDelay:        cfg.Auth.FailureDelay,
		IdleTimeout:         cfg.Limits.IdleTimeout,
		Mechanisms:          cfg.Auth.Mechanisms,
		MaxConnections:      cfg.Limits.MaxConnections,
		MaxConnectionsPerIP: cfg.Limits.MaxConnectionsPerIP,
		OutlookNoNULs:       cfg.POP3.OutlookNoNULs,
		LoginDelay:          cfg.Limits.LoginDelay,
		Expire:              expireAnnounced(&cfg.Policy),
	}
}

// expireAnnounced is the EXPIRE that CAPA announces for p: popbridge
// itself never removes a message (only a client's DELE does), so NEVER;
// with a window of the last N days a message leaves the maildrop N days
// after it arrived, so N. "" when announcing is off (policy.
// announce_expire: false, for an upstream that expires mail on its own).
func expireAnnounced(p *config.Policy) string {
	if !p.AnnounceExpire {
		return ""
	}
	if since := time.Duration(p.Window.Since); since > 0 {
		return strconv.FormatInt(int64(since/(24*time.Hour)), 10)
	}
	return "NEVER"
}

func (d *daemon) newPOP3Server(cfg *config.Config) *pop3.Server {
	st := pop3Settings(cfg)
	srv := &pop3.Server{
		LoginDelay:     st.LoginDelay,
		Expire:         st.Expire,
		Backend:        d.oauth2,
		Logger:         d.log.Named("pop3"),
		Implementation: "popbridge",
		FailureDelay:   st.FailureDelay,
		IdleTimeout:    st.IdleTimeout,
		Mechanisms:     st.Mechanisms,
		MaxConnections: st.MaxConnections,
		OutlookNoNULs:  st.OutlookNoNULs,

		MaxConnectionsPerIP: st.MaxConnectionsPerIP,
		AllowPlaintext:      d.allowPlaintext,
		LoginLimiter:        d.limiter,
		// Clients that connect while we drain are told why.
		RefuseDuringShutdown: true,
	}
	if d.metrics != nil {
		srv.Observer = d.metrics.POP3()
	}
	return srv
}

// allowPlaintext is the login policy for connections without TLS:
// auth.allow_plaintext, loopback clients, and the networks of a listener's
// legacy lane with allow_plaintext. Behind a PROXY header the client is
// the one the header names, and it is a loopback client only if the proxy
// is local too (ConnInfo.FromLoopback).
func (d *daemon) allowPlaintext(c *pop3.ConnInfo) bool {
	if d.cfg.Load().Auth.AllowPlaintext || c.FromLoopback() {
		return true
	}
	lane := d.lanes[c.Listener]
	return lane != nil && lane.plaintext && lane.contains(c.RemoteAddr)
}

// trustedProxy is the pop3.ProxyProtocol policy of proxy_protocol
// listeners: peer is in limits.trusted_proxies as last (re)loaded.
func (d *daemon) trustedProxy(peer net.Addr) bool {
	nets := d.proxies.Load()
	return nets != nil && nets.contains(peer)
}
