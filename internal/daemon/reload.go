package daemon

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/popbridge/popbridge/internal/config"
)

// restartKeys are the keys (and key prefixes, ending in ".") that a reload
// does not apply: they need a restart. Everything else applies to the
// connections and sessions that start after the reload; routes too, whole
// (a route's upstream address names its users' maildrops, but a route
// added, changed or removed is how an operator moves a domain: its users'
// new sessions go to the new upstream, with its state).
var restartKeys = []string{
	"listeners",        // sockets, TLS modes and legacy lanes are bound at start
	"state.",           // the store is open
	"metrics.address",  // the HTTP listener is bound
	"log.format",       // the encoder is built
	"upstream.address", // names every maildrop in the state store
	"upstream.mailbox", // likewise
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
	return &eff
}

// reload reads the configuration file again (SIGHUP) and applies what
// changed and can change safely: TLS certificates (re-read even when their
// paths did not change: that is how a renewed certificate is picked up)
// and tls.min_version for new TLS handshakes; auth.*, upstream timeouts and
// TLS settings, routes (new dialers), policy.*, limits.* (limits.trusted_proxies included: the
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
			zap.String("config", d.opts.ConfigPath), zap.Error(err))
		return err
	}
	if d.opts.ConfigPath == "" {
		return reject(errNoConfigFile)
	}
	d.log.Info("reloading the configuration", zap.String("config", d.opts.ConfigPath))
	old := d.cfg.Load()
	next, err := config.Load(d.opts.ConfigPath, d.opts.Environ)
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
	ups, err := d.oauth2Upstreams(eff)
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
	d.oauth2.SetUpstreams(ups)
	d.limiter.set(eff.Limits.AuthFailuresPerIP)
	d.proxies.Store(&proxies)
	if d.opts.Level != nil {
		d.opts.Level.SetLevel(level)
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
			if k == w.Key || strings.HasPrefix(w.Key, k+".") { // "routes" when their number changed
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

// Reloads delivers a value on reload for each SIGHUP the process gets
// (several that arrive while one reload is pending make one), for
// Options.Reload, until stop is called.
func Reloads() (reload <-chan struct{}, stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	c := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-hup:
				select {
				case c <- struct{}{}:
				default: // one already pending
				}
			}
		}
	}()
	return c, func() {
		signal.Stop(hup)
		close(done)
	}
}
