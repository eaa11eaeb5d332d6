package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"go.uber.org/zap"

	"github.com/popbridge/popbridge/cmd/internal/config"
	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/uidmap"
)

func cmdServe(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, path, err := loadConfig("serve", args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return err
	}
	defer log.Sync()
	log.Info("starting", zap.String("version", version), zap.String("config", path))
	return serveConfig(ctx, cfg, log, nil)
}

// serveConfig runs popbridge with cfg until ctx is done, then shuts down
// gracefully. ready, if set, is called with the bound listener addresses
// once every listener accepts connections.
func serveConfig(ctx context.Context, cfg *config.Config, log *zap.Logger, ready func([]net.Addr)) error {
	store, err := openStore(cfg.State)
	if err != nil {
		return err
	}
	defer store.Close()

	backend, err := newBackend(cfg, store, log)
	if err != nil {
		return err
	}
	srv, err := newPOP3Server(cfg, backend, log)
	if err != nil {
		return err
	}

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

	errc := make(chan error, len(listeners))
	var wg sync.WaitGroup
	for i, l := range listeners {
		mode := tlsModes[cfg.Listeners[i].TLS]
		log.Info("listening", zap.Stringer("address", l.Addr()), zap.Stringer("tls", mode))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.ServeListener(l, pop3.ListenerConfig{TLS: mode}); err != nil && !errors.Is(err, pop3.ErrServerClosed) {
				errc <- fmt.Errorf("serve %s: %w", l.Addr(), err)
			}
		}()
	}
	if ready != nil {
		ready(addrs)
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", zap.Duration("grace", cfg.ShutdownGrace))
	case runErr = <-errc:
		log.Error("listener failed, shutting down", zap.Error(runErr))
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("sessions cut off at the end of shutdown_grace (nothing was deleted for them)", zap.Error(err))
	}
	wg.Wait()
	log.Info("stopped")
	return runErr
}

var tlsModes = map[string]pop3.TLSMode{
	"none":     pop3.TLSNone,
	"":         pop3.TLSNone,
	"starttls": pop3.TLSStartTLS,
	"implicit": pop3.TLSImplicit,
}

func openStore(sc config.State) (uidmap.Store, error) {
	switch sc.Driver {
	case "bolt":
		return uidmap.OpenBolt(sc.Path)
	case "memory":
		return uidmap.NewMemoryStore(), nil
	default:
		return nil, fmt.Errorf("state.driver %q is not available in this version", sc.Driver)
	}
}

// newDialer builds the upstream dialer from the upstream: section.
func newDialer(u config.Upstream, log *zap.Logger) (*imapupstream.Dialer, error) {
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
	}, log)
}

func newBackend(cfg *config.Config, store uidmap.Store, log *zap.Logger) (*proxy.Backend, error) {
	u := cfg.Upstream
	dialer, err := newDialer(u, log.Named("upstream"))
	if err != nil {
		return nil, err
	}
	if u.InsecureSkipVerify {
		log.Warn("upstream.insecure_skip_verify is set: the upstream's certificate is not verified")
	}
	onDele, err := proxy.ParseOnDele(cfg.Policy.OnDele)
	if err != nil {
		return nil, err
	}
	format, err := uidmap.ParseFormat(cfg.Policy.UIDLFormat)
	if err != nil {
		return nil, err
	}
	return proxy.New(proxy.Options{
		Dialer:     dialer,
		UpstreamID: u.Address,
		Mailbox:    u.Mailbox,
		Map:        uidmap.New(store, uidmap.Options{Format: format, ReuseXUIDL: cfg.Policy.ReuseXUIDL}),
		Policy: proxy.Policy{
			OnDele:       onDele,
			TrashMailbox: cfg.Policy.TrashMailbox,
			MarkSeen:     cfg.Policy.MarkSeen,
			Exclusive:    cfg.Policy.Lock == "exclusive",
		},
		Logger: log,
	})
}

func newPOP3Server(cfg *config.Config, backend pop3.Backend, log *zap.Logger) (*pop3.Server, error) {
	srv := &pop3.Server{
		Backend:        backend,
		Logger:         log.Named("pop3"),
		Implementation: "popbridge",
		FailureDelay:   cfg.Auth.FailureDelay,
		IdleTimeout:    cfg.Limits.IdleTimeout,
		Mechanisms:     cfg.Auth.Mechanisms,
		MaxConnections: cfg.Limits.MaxConnections,
		OutlookNoNULs:  cfg.POP3.OutlookNoNULs,

		MaxConnectionsPerIP: cfg.Limits.MaxConnectionsPerIP,
		AllowPlaintext: func(c *pop3.ConnInfo) bool {
			return cfg.Auth.AllowPlaintext || pop3.IsLoopback(c.RemoteAddr)
		},
	}
	// A nil *LoginLimiter must not become a non-nil interface.
	if l := proxy.NewLoginLimiter(cfg.Limits.AuthFailuresPerIP); l != nil {
		srv.LoginLimiter = l
	}
	if cfg.TLS.CertFile != "" {
		tc, err := loadTLS(cfg.TLS)
		if err != nil {
			return nil, err
		}
		srv.TLSConfig = tc
	}
	return srv, nil
}

var tlsVersions = map[string]uint16{
	"1.0": tls.VersionTLS10, "1.1": tls.VersionTLS11, "1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13,
}

func loadTLS(tc config.TLS) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(tc.CertFile, tc.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file/tls.key_file: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tlsVersions[tc.MinVersion]}, nil
}
