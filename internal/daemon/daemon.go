package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/metrics"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/uidmap"
)

// Options are what Run needs besides the configuration and the logger. The
// zero value runs the configuration as it is, with nothing reloading it.
type Options struct {
	// ConfigPath is the file a reload reads again; "" for none.
	ConfigPath string
	// Environ is the environment whose POPBRIDGE_ overrides a reload
	// applies (os.Environ()).
	Environ []string
	// Level is the logger's level, which a reload of log.level changes;
	// nil: fixed.
	Level *zap.AtomicLevel
	// Reload: each value received reloads ConfigPath (Reloads feeds it
	// from SIGHUP).
	Reload <-chan struct{}
	// Version is reported by popbridge_build_info.
	Version string
	// Ready, if set, is called with the bound listener addresses once
	// every listener accepts connections.
	Ready func([]net.Addr)

	// For tests.
	reloaded  func(error)                         // after each reload, with its result
	wrapStore func(uidmap.Store) uidmap.Store     // wraps the state store
	now       func() time.Time                    // the login limiter's clock
	started   func(d *daemon, metricsAddr string) // once everything listens
}

// daemon is one running `popbridge serve`. The configuration in force sits
// behind an atomic pointer that each new connection, login and session
// reads; a reload builds everything it changes first and swaps it in only
// when all of it worked, so a bad file changes nothing.
type daemon struct {
	opts    Options
	log     *zap.Logger
	cfg     atomic.Pointer[config.Config] // in force; restart-only keys as at start
	store   uidmap.Store
	backend *proxy.Backend
	oauth2  *proxy.OAuth2Backend // backend, with the logins of upstream.oauth2 upstreams through grants
	srv     *pop3.Server
	certs   *tlsCerts
	lanes   map[string]*legacyLane // by listener address; fixed at start
	proxies atomic.Pointer[ipNets] // limits.trusted_proxies in force
	limiter *limiterSwitch
	metrics *metrics.Metrics // nil without metrics.address

	reloadMu sync.Mutex
}

// Run runs popbridge with cfg until ctx is done, then shuts down
// gracefully: new connections and logins get -ERR [SYS/TEMP] server
// shutting down, open sessions have shutdown_grace to finish, and the rest
// are cut off without UPDATE.
func Run(ctx context.Context, cfg *config.Config, log *zap.Logger, o Options) error {
	store, err := OpenStore(cfg.State)
	if err != nil {
		return err
	}
	defer store.Close()
	if o.wrapStore != nil {
		store = o.wrapStore(store)
	}

	d := &daemon{opts: o, log: log, store: store}
	d.cfg.Store(cfg)
	if cfg.Metrics.Address != "" {
		d.metrics = metrics.New(o.Version)
	}
	for _, w := range cfg.Warnings() {
		log.Warn("risky setting: "+w.Problem, zap.String("key", w.Key), zap.Int("line", w.Line))
	}
	opts, err := d.backendOptions(cfg)
	if err != nil {
		return err
	}
	if d.backend, err = proxy.New(opts); err != nil {
		return err
	}
	ups, err := d.oauth2Upstreams(cfg)
	if err != nil {
		return err
	}
	// Always wrapped, even without OAuth2 upstreams: a reload may add some.
	d.oauth2 = proxy.WithOAuth2(d.backend, ups)
	if d.certs, err = newTLSCerts(cfg.TLS); err != nil {
		return err
	}
	now := o.now
	if now == nil {
		now = time.Now
	}
	d.limiter = &limiterSwitch{now: now}
	d.limiter.set(cfg.Limits.AuthFailuresPerIP)
	if d.lanes, err = newLegacyLanes(cfg.Listeners); err != nil {
		return err
	}
	proxies, err := parseIPNets(cfg.Limits.TrustedProxies)
	if err != nil {
		return fmt.Errorf("limits.trusted_proxies: %w", err)
	}
	d.proxies.Store(&proxies)
	d.srv = d.newPOP3Server(cfg)

	listeners := make([]net.Listener, 0, len(cfg.Listeners))
	closeAll := func() {
		for _, l := range listeners {
			l.Close()
		}
	}
	addrs := make([]net.Addr, 0, len(cfg.Listeners))
	for _, lc := range cfg.Listeners {
		l, err := net.Listen("tcp", lc.Address)
		if err != nil {
			closeAll()
			return fmt.Errorf("listen %s: %w", lc.Address, err)
		}
		listeners = append(listeners, l)
		addrs = append(addrs, l.Addr())
	}

	var msrv *metrics.Server
	metricsAddr := ""
	if d.metrics != nil {
		ready := &metrics.Readiness{
			Draining: d.srv.Draining,
			Store:    store,
			Upstream: func() string {
				if c := d.cfg.Load(); c.Metrics.ReadyzUpstream {
					return c.Upstream.Address
				}
				return ""
			},
		}
		if msrv, err = metrics.Listen(cfg.Metrics.Address, metrics.Handler(d.metrics, ready)); err != nil {
			closeAll()
			return err
		}
		metricsAddr = msrv.Addr().String()
		log.Info("metrics listening", zap.String("address", metricsAddr),
			zap.Strings("paths", []string{"/metrics", "/healthz", "/readyz"}))
	}

	errc := make(chan error, len(listeners))
	var wg sync.WaitGroup
	for i, l := range listeners {
		lc := cfg.Listeners[i]
		plc := pop3.ListenerConfig{TLS: tlsModes[lc.TLS], Name: lc.Address}
		if plc.TLS != pop3.TLSNone {
			plc.TLSConfig = d.certs.listenerConfig(d.lanes[lc.Address])
		}
		if lc.ProxyProtocol {
			// The header is read with pop3's DefaultProxyHeaderTimeout: a
			// load balancer sends it at once.
			plc.ProxyProtocol = &pop3.ProxyProtocol{Trusted: d.trustedProxy}
		}
		if d.metrics != nil {
			d.metrics.Listener(plc.Name, plc.TLS)
		}
		fields := []zap.Field{zap.Stringer("address", l.Addr()), zap.Stringer("tls", plc.TLS)}
		if lc.ProxyProtocol {
			fields = append(fields, zap.Bool("proxy_protocol", true), zap.Strings("trusted_proxies", cfg.Limits.TrustedProxies))
		}
		if lane := d.lanes[lc.Address]; lane != nil {
			fields = append(fields, zap.String("legacy", lc.Legacy.Describe()), zap.Strings("legacy_networks", lc.Legacy.Networks))
		}
		log.Info("listening", fields...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.srv.ServeListener(l, plc); err != nil && !errors.Is(err, pop3.ErrServerClosed) {
				errc <- fmt.Errorf("serve %s: %w", l.Addr(), err)
			}
		}()
	}
	if o.Ready != nil {
		o.Ready(addrs)
	}
	if o.started != nil {
		o.started(d, metricsAddr)
	}

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case runErr = <-errc:
			log.Error("listener failed, shutting down", zap.Error(runErr))
			break loop
		case <-o.Reload:
			err := d.reload()
			if o.reloaded != nil {
				o.reloaded(err)
			}
		}
	}
	grace := d.cfg.Load().ShutdownGrace
	log.Info("shutting down: new connections and logins are refused; open sessions may finish",
		zap.Duration("grace", grace))
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := d.srv.Shutdown(sctx); err != nil {
		log.Warn("sessions cut off at the end of shutdown_grace (nothing was deleted for them)", zap.Error(err))
	}
	wg.Wait()
	if msrv != nil {
		mctx, mcancel := context.WithTimeout(context.Background(), time.Second)
		msrv.Shutdown(mctx)
		mcancel()
	}
	log.Info("stopped")
	return runErr
}
