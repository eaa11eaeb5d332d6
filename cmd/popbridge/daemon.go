package main

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/metrics"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/uidmap"
)

// daemon is one running `popbridge serve`. The configuration in force sits
// behind an atomic pointer that each new connection, login and session
// reads; a reload builds everything it changes first and swaps it in only
// when all of it worked, so a bad file changes nothing.
type daemon struct {
	env     serveEnv
	log     *zap.Logger
	cfg     atomic.Pointer[config.Config] // in force; restart-only keys as at start
	store   uidmap.Store
	backend *proxy.Backend
	srv     *pop3.Server
	certs   *tlsCerts
	lanes   map[string]*legacyLane // by listener address; fixed at start
	proxies atomic.Pointer[ipNets] // limits.trusted_proxies in force
	limiter *limiterSwitch
	metrics *metrics.Metrics // nil without metrics.address

	reloadMu sync.Mutex
}

// restartKeys are the keys (and key prefixes, ending in ".") that a reload
// does not apply: they need a restart. Everything else applies to the
// connections and sessions that start after the reload.
var restartKeys = []string{
	"listeners",        // sockets, TLS modes and legacy lanes are bound at start
	"state.",           // the store is open
	"metrics.address",  // the HTTP listener is bound
	"log.format",       // the encoder is built
	"upstream.address", // names every maildrop in the state store
	"upstream.mailbox", // likewise
	"upstream.master_user", "upstream.master_password",
}

func needsRestart(key string) bool {
	for _, k := range restartKeys {
		if key == k || (strings.HasSuffix(k, ".") && strings.HasPrefix(key, k)) ||
			strings.HasPrefix(key, k+".") {
			return true
		}
	}
	return false
}

// keepRestartKeys returns next with the values of the restart-only keys
// taken from old: the configuration that is really in force after a
// reload.
func keepRestartKeys(next, old *config.Config) *config.Config {
	eff := *next
	eff.Listeners = old.Listeners
	eff.State = old.State
	eff.Metrics.Address = old.Metrics.Address
	eff.Log.Format = old.Log.Format
	eff.Upstream.Address = old.Upstream.Address
	eff.Upstream.Mailbox = old.Upstream.Mailbox
	eff.Upstream.MasterUser = old.Upstream.MasterUser
	eff.Upstream.MasterPassword = old.Upstream.MasterPassword
	return &eff
}

// reload reads the configuration file again (SIGHUP) and applies what
// changed and can change safely: TLS certificates (re-read even when their
// paths did not change: that is how a renewed certificate is picked up)
// and tls.min_version for new TLS handshakes; auth.*, upstream timeouts and
// TLS settings, policy.*, limits.* (limits.trusted_proxies included: the
// next connection's peer is checked against the new list) and pop3.* for
// new connections and
// sessions; log.level at once; shutdown_grace for the next shutdown. Open
// sessions keep the settings they started with. Keys that need a restart
// are logged and not applied. A file that fails to load or validate, or
// whose certificate does not load, is rejected as a whole.
func (d *daemon) reload() (err error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	defer func() {
		if d.metrics != nil {
			d.metrics.Reloaded(err == nil)
		}
	}()
	reject := func(err error) error {
		d.log.Error("config reload rejected; the running configuration stays in force",
			zap.String("config", d.env.path), zap.Error(err))
		return err
	}
	if d.env.path == "" {
		return reject(errNoConfigFile)
	}
	d.log.Info("reloading the configuration", zap.String("config", d.env.path))
	old := d.cfg.Load()
	next, err := config.Load(d.env.path, d.env.environ)
	if err != nil {
		return reject(err)
	}
	var apply, restart []string
	for _, k := range config.Diff(old, next) {
		if needsRestart(k) {
			restart = append(restart, k)
		} else {
			apply = append(apply, k)
		}
	}
	eff := keepRestartKeys(next, old)

	// Build everything first.
	cert, err := loadCertificate(eff.TLS)
	if err != nil {
		return reject(err)
	}
	opts, err := d.backendOptions(eff)
	if err != nil {
		return reject(err)
	}
	level, err := zapcore.ParseLevel(eff.Log.Level)
	if err != nil {
		return reject(err)
	}
	settings := pop3Settings(eff)
	proxies, err := parseIPNets(eff.Limits.TrustedProxies)
	if err != nil {
		return reject(fmt.Errorf("limits.trusted_proxies: %w", err)) // validation already refused it
	}

	// Then swap it in.
	if err := d.srv.Reconfigure(settings); err != nil {
		return reject(err)
	}
	certChanged := d.certs.set(cert, tlsVersions[eff.TLS.MinVersion])
	if err := d.backend.Reconfigure(opts); err != nil {
		return reject(err) // cannot happen: backendOptions sets Dialer and Map
	}
	d.limiter.set(eff.Limits.AuthFailuresPerIP)
	d.proxies.Store(&proxies)
	if d.env.level != nil {
		d.env.level.SetLevel(level)
	}
	d.cfg.Store(eff)

	if certChanged && cert != nil {
		fields := []zap.Field{zap.String("cert_file", eff.TLS.CertFile)}
		if cert.Leaf != nil {
			fields = append(fields, zap.String("subject", cert.Leaf.Subject.String()),
				zap.Time("not_after", cert.Leaf.NotAfter))
		}
		d.log.Info("TLS certificate reloaded: new TLS connections use it", fields...)
	}
	if len(restart) > 0 {
		d.log.Warn("config keys changed that need a restart; not applied", zap.Strings("keys", restart))
	}
	for _, w := range eff.Warnings() {
		for _, k := range apply {
			if k == w.Key {
				d.log.Warn("risky setting: "+w.Problem, zap.String("key", w.Key), zap.Int("line", w.Line))
			}
		}
	}
	if apply == nil {
		apply = []string{}
	}
	d.log.Info("config reloaded", zap.Strings("changed", apply), zap.Strings("needs_restart", restart),
		zap.Bool("certificate_changed", certChanged))
	return nil
}

var errNoConfigFile = errors.New("no configuration file to reload")

// trustedProxy is the pop3.ProxyProtocol policy of proxy_protocol
// listeners: peer is in limits.trusted_proxies as last (re)loaded.
func (d *daemon) trustedProxy(peer net.Addr) bool {
	nets := d.proxies.Load()
	return nets != nil && nets.contains(peer)
}

// limiterSwitch is the pop3.LoginLimiter of a daemon: a proxy.LoginLimiter
// that a reload of limits.auth_failures_per_ip replaces (its counts start
// afresh; an unchanged value keeps them).
type limiterSwitch struct {
	now func() time.Time
	mu  sync.Mutex // serialises set
	cur atomic.Pointer[proxy.LoginLimiter]
	n   int
}

var _ pop3.LoginLimiter = (*limiterSwitch)(nil)

func (s *limiterSwitch) set(perMinute int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if perMinute == s.n && (perMinute <= 0 || s.cur.Load() != nil) {
		return
	}
	s.n = perMinute
	s.cur.Store(proxy.NewLoginLimiterWithClock(perMinute, s.now)) // nil when perMinute <= 0
}

func (s *limiterSwitch) Allow(remote net.Addr) (bool, time.Duration) {
	if l := s.cur.Load(); l != nil {
		return l.Allow(remote)
	}
	return true, 0
}

func (s *limiterSwitch) Failed(remote net.Addr) {
	if l := s.cur.Load(); l != nil {
		l.Failed(remote)
	}
}
