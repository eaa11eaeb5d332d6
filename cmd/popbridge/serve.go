package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/metrics"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/uidmap"
)

func cmdServe(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, path, err := loadConfig("serve", args, stderr)
	if err != nil {
		return err
	}
	log, level, err := newLoggerTo(stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return err
	}
	defer log.Sync()
	log.Info("starting", zap.String("version", version), zap.String("config", path))

	// SIGHUP reloads the configuration file (see daemon.reload).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	hupCtx, stopHUP := context.WithCancel(ctx)
	defer stopHUP()
	reload := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-hupCtx.Done():
				return
			case <-hup:
				select {
				case reload <- struct{}{}:
				default: // one already pending
				}
			}
		}
	}()
	return serve(ctx, serveEnv{cfg: cfg, path: path, environ: os.Environ(), log: log, level: &level, reload: reload})
}

// serveConfig runs popbridge with cfg until ctx is done, then shuts down
// gracefully. ready, if set, is called with the bound listener addresses
// once every listener accepts connections. Nothing reloads it.
func serveConfig(ctx context.Context, cfg *config.Config, log *zap.Logger, ready func([]net.Addr)) error {
	return serve(ctx, serveEnv{cfg: cfg, log: log, ready: ready})
}

// serveEnv is what serve runs with.
type serveEnv struct {
	cfg     *config.Config
	path    string   // the file a reload reads; "" for none
	environ []string // the environment a reload applies
	log     *zap.Logger
	level   *zap.AtomicLevel // log.level, changed by reloads; nil: fixed
	ready   func([]net.Addr)
	reload  <-chan struct{} // each value reloads path (SIGHUP)

	// For tests.
	reloaded  func(error)                         // after each reload, with its result
	wrapStore func(uidmap.Store) uidmap.Store     // wraps the state store
	now       func() time.Time                    // the login limiter's clock
	started   func(d *daemon, metricsAddr string) // once everything listens
}

// serve runs popbridge until ctx is done, then shuts down gracefully: new
// connections and logins get -ERR [SYS/TEMP] server shutting down, open
// sessions have shutdown_grace to finish, and the rest are cut off without
// UPDATE.
func serve(ctx context.Context, env serveEnv) error {
	cfg, log := env.cfg, env.log
	store, err := openStore(cfg.State)
	if err != nil {
		return err
	}
	defer store.Close()
	if env.wrapStore != nil {
		store = env.wrapStore(store)
	}

	d := &daemon{env: env, log: log, store: store}
	d.cfg.Store(cfg)
	if cfg.Metrics.Address != "" {
		d.metrics = metrics.New(version)
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
	if d.certs, err = newTLSCerts(cfg.TLS); err != nil {
		return err
	}
	now := env.now
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
	if env.ready != nil {
		env.ready(addrs)
	}
	if env.started != nil {
		env.started(d, metricsAddr)
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
		case <-env.reload:
			err := d.reload()
			if env.reloaded != nil {
				env.reloaded(err)
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

var tlsModes = map[string]pop3.TLSMode{
	"none":     pop3.TLSNone,
	"":         pop3.TLSNone,
	"starttls": pop3.TLSStartTLS,
	"implicit": pop3.TLSImplicit,
}

// newDialer builds the upstream dialer from the upstream: section.
func newDialer(u config.Upstream, log *zap.Logger) (*imapupstream.Dialer, error) {
	return newDialerObserved(u, log, nil)
}

// newDialerObserved is newDialer reporting to obs (nil: nothing).
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
		Observer:           obs,
	}, log)
}

// backendOptions builds the proxy's options (a new upstream dialer
// included) from cfg.
func (d *daemon) backendOptions(cfg *config.Config) (proxy.Options, error) {
	u := cfg.Upstream
	var upObs imapupstream.Observer
	var pxObs proxy.Observer
	if d.metrics != nil {
		upObs, pxObs = d.metrics.Upstream(), d.metrics.Proxy()
	}
	dialer, err := newDialerObserved(u, d.log.Named("upstream"), upObs)
	if err != nil {
		return proxy.Options{}, err
	}
	onDele, err := proxy.ParseOnDele(cfg.Policy.OnDele)
	if err != nil {
		return proxy.Options{}, err
	}
	format, err := uidmap.ParseFormat(cfg.Policy.UIDLFormat)
	if err != nil {
		return proxy.Options{}, err
	}
	return proxy.Options{
		Dialer:     dialer,
		UpstreamID: u.Address,
		Mailbox:    u.Mailbox,
		Map:        uidmap.New(d.store, uidmap.Options{Format: format, ReuseXUIDL: cfg.Policy.ReuseXUIDL}),
		Policy: proxy.Policy{
			OnDele:       onDele,
			TrashMailbox: cfg.Policy.TrashMailbox,
			MarkSeen:     cfg.Policy.MarkSeen,
			Exclusive:    cfg.Policy.Lock == "exclusive",
		},
		Logger:   d.log,
		Observer: pxObs,
	}, nil
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
	}
}

func (d *daemon) newPOP3Server(cfg *config.Config) *pop3.Server {
	st := pop3Settings(cfg)
	srv := &pop3.Server{
		Backend:        d.backend,
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
