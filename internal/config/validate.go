package config

import (
	"github.com/popbridge/popbridge/uidmap"

	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// validate returns every problem in cfg; it also fills in the values an
// empty key means (tls "" is "none").
func (cfg *Config) validate() Errors {
	var errs Errors
	bad := func(key, format string, args ...any) {
		errs = append(errs, KeyError{Key: key, Problem: fmt.Sprintf(format, args...)})
	}
	oneOf := func(key, value string, allowed ...string) {
		for _, a := range allowed {
			if value == a {
				return
			}
		}
		bad(key, "%q is not one of %s", value, strings.Join(allowed, ", "))
	}
	hostPort := func(key, addr string) {
		if _, port, err := net.SplitHostPort(addr); err != nil {
			bad(key, "%q is not host:port: %v", addr, err)
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			bad(key, "%q has no valid port", addr)
		}
	}
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			bad(key, "must be a positive duration such as 10s")
		}
	}

	if len(cfg.Listeners) == 0 {
		bad("listeners", "at least one listener is needed")
	}
	needCert := false
	proxyListener := "" // the first listener with proxy_protocol
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		key := "listeners." + strconv.Itoa(i)
		hostPort(key+".address", l.Address)
		if l.TLS == "" {
			l.TLS = "none"
		}
		oneOf(key+".tls", l.TLS, "none", "starttls", "implicit")
		if l.ProxyProtocol && proxyListener == "" {
			proxyListener = key
		}
		if l.TLS != "none" {
			needCert = true
		}
		validateLegacy(key+".legacy", l, bad)
	}
	if needCert && (cfg.TLS.CertFile == "" || cfg.TLS.KeyFile == "") {
		bad("tls.cert_file", "a listener uses TLS, so tls.cert_file and tls.key_file are required")
	}
	oneOf("tls.min_version", cfg.TLS.MinVersion, "1.0", "1.1", "1.2", "1.3")
	for i, m := range cfg.Auth.Mechanisms {
		cfg.Auth.Mechanisms[i] = strings.ToUpper(m)
		oneOf("auth.mechanisms."+strconv.Itoa(i), cfg.Auth.Mechanisms[i], "PLAIN", "LOGIN", "OAUTHBEARER", "XOAUTH2")
	}
	if cfg.Auth.FailureDelay < 0 {
		bad("auth.failure_delay", "must not be negative")
	}
	validateHook(&cfg.Auth.HTTPHook, bad)
	if cfg.Auth.Verify == "" {
		cfg.Auth.Verify = "none"
	}
	oneOf("auth.verify", cfg.Auth.Verify, "none", "upstream")

	// upstream checks an upstream block: upstream: or a route's.
	upstream := func(key string, u *Upstream) {
		if u.Address == "" {
			bad(key+".address", "required: the IMAP server to log in to, as host:port")
		} else {
			hostPort(key+".address", u.Address)
		}
		oneOf(key+".tls", u.TLS, "none", "starttls", "implicit")
		if u.Mailbox == "" {
			bad(key+".mailbox", "must not be empty")
		}
		positive(key+".connect_timeout", u.ConnectTimeout)
		positive(key+".command_timeout", u.CommandTimeout)
		validateOAuth2(key+".oauth2", &u.OAuth2, bad)
		validateMaster(key, u, &cfg.Auth, bad)
	}
	// onDele checks a policy block's on_dele and trash_mailbox.
	onDele := func(key, value, trash string) {
		oneOf(key+".on_dele", value, "expunge", "trash", "hide", "keep")
		if value == "trash" && trash == "" {
			bad(key+".trash_mailbox", "required when %s.on_dele is trash", key)
		}
	}

	upstream("upstream", &cfg.Upstream)
	onDele("policy", cfg.Policy.OnDele, cfg.Policy.TrashMailbox)
	domains := make(map[string]string, len(cfg.Routes)) // lower-case domain -> key of its route
	for i := range cfg.Routes {
		r := &cfg.Routes[i]
		key := "routes." + strconv.Itoa(i)
		switch d := strings.ToLower(r.Domain); {
		case d == "":
			bad(key+".domain", "required: the mail domain (after the last '@' of the user name) the route is for")
		case strings.ContainsAny(d, "@ \t"):
			bad(key+".domain", "%q is not a domain: give what follows the '@' of the user names", r.Domain)
		case domains[d] != "":
			bad(key+".domain", "%q is already routed by %s", r.Domain, domains[d])
		default:
			domains[d] = key
		}
		r.fillDefaults(cfg)
		if r.Upstream.Mailbox != r.Mailbox {
			bad(key+".upstream.mailbox", "a route's mailbox is %s.mailbox (%q), not %q", key, r.Mailbox, r.Upstream.Mailbox)
		}
		upstream(key+".upstream", &r.Upstream)
		onDele(key+".policy", r.Policy.OnDele, r.Policy.TrashMailbox)
	}
	oneOf("policy.lock", cfg.Policy.Lock, "exclusive", "none")
	validateViews(cfg, bad)
	if _, err := uidmap.ParseFormat(cfg.Policy.UIDLFormat); err != nil {
		bad("policy.uidl_format", "%v", err)
	}

	oneOf("state.driver", cfg.State.Driver, "bolt", "postgres", "memory")
	if cfg.State.Driver == "bolt" && cfg.State.Path == "" {
		bad("state.path", "required for the bolt driver")
	}
	if cfg.State.Driver == "postgres" && cfg.State.DSN == "" {
		bad("state.dsn", "required for the postgres driver (e.g. postgres://popbridge:PASSWORD@db.example.net/popbridge)")
	}
	if cfg.State.LockLease < time.Second {
		bad("state.lock_lease", "must be at least 1s (leases are renewed every third of it)")
	}

	if cfg.Limits.MaxConnections < 1 {
		bad("limits.max_connections", "must be at least 1")
	}
	if cfg.Limits.MaxConnectionsPerIP < 1 {
		bad("limits.max_connections_per_ip", "must be at least 1")
	}
	if cfg.Limits.IdleTimeout < 10*time.Minute {
		bad("limits.idle_timeout", "%s is below the 10 minutes RFC 1939 requires", cfg.Limits.IdleTimeout)
	}
	if cfg.Limits.AuthFailuresPerIP < 0 {
		bad("limits.auth_failures_per_ip", "must not be negative")
	}
	for i, p := range cfg.Limits.TrustedProxies {
		if _, _, err := net.ParseCIDR(p); err != nil && net.ParseIP(p) == nil {
			bad("limits.trusted_proxies."+strconv.Itoa(i), "%q is neither an IP address nor a CIDR", p)
		}
	}
	if proxyListener != "" && len(cfg.Limits.TrustedProxies) == 0 {
		// A PROXY header is a claim about who the client is: taken from
		// anyone, it would let every client pick its own address past the
		// per-IP limits, the login limiter and the plaintext policy.
		bad("limits.trusted_proxies", "required when a listener has proxy_protocol: true (%s): the addresses or CIDRs of the load balancers allowed to send PROXY headers", proxyListener)
	}
	if cfg.ShutdownGrace < 0 {
		bad("shutdown_grace", "must not be negative")
	}
	oneOf("log.level", cfg.Log.Level, "debug", "info", "warn", "error")
	oneOf("log.format", cfg.Log.Format, "json", "console")
	if cfg.Metrics.Address != "" {
		hostPort("metrics.address", cfg.Metrics.Address)
	}
	return errs
}

// validateLegacy checks a listener's legacy lane: it must name what it
// relaxes and the networks it relaxes it for, and those may not be
// everyone.
func validateLegacy(key string, l *Listener, bad func(key, format string, args ...any)) {
	lg := l.Legacy
	if !lg.Enabled() {
		if len(lg.Networks) > 0 {
			bad(key, "networks are listed but nothing is relaxed: set min_tls_version and/or allow_plaintext")
		}
		return
	}
	if v := lg.MinTLSVersion; v != "" {
		switch v {
		case "1.0", "1.1", "1.2", "1.3":
		default:
			bad(key+".min_tls_version", "%q is not one of 1.0, 1.1, 1.2, 1.3", v)
		}
		if l.TLS == "none" {
			bad(key+".min_tls_version", "the listener has tls: none, so there is no TLS version to relax")
		}
	}
	if len(lg.Networks) == 0 {
		bad(key+".networks", "required: the client networks (CIDRs or addresses) the legacy lane is for")
	}
	for i, n := range lg.Networks {
		nk := key + ".networks." + strconv.Itoa(i)
		if _, ipnet, err := net.ParseCIDR(n); err == nil {
			if ones, _ := ipnet.Mask.Size(); ones == 0 {
				bad(nk, "%q covers every address: a legacy lane must be limited to the networks of the old clients", n)
			}
		} else if net.ParseIP(n) == nil {
			bad(nk, "%q is neither an IP address nor a CIDR", n)
		}
	}
}

// fillDefaults gives a route the values its empty keys mean: the defaults
// of an upstream block (not the default upstream's values) but for the
// mailbox, which is the default upstream's, and policy.* for its policy.
func (r *Route) fillDefaults(cfg *Config) {
	def := Default().Upstream
	u := &r.Upstream
	if u.TLS == "" {
		u.TLS = def.TLS
	}
	if u.ConnectTimeout == 0 {
		u.ConnectTimeout = def.ConnectTimeout
	}
	if u.CommandTimeout == 0 {
		u.CommandTimeout = def.CommandTimeout
	}
	switch {
	case r.Mailbox == "" && u.Mailbox != "":
		r.Mailbox = u.Mailbox
	case r.Mailbox == "":
		r.Mailbox = cfg.Upstream.Mailbox
	}
	if u.Mailbox == "" {
		u.Mailbox = r.Mailbox
	}
	if r.Policy.OnDele == "" {
		r.Policy.OnDele = cfg.Policy.OnDele
	}
	if r.Policy.TrashMailbox == "" {
		r.Policy.TrashMailbox = cfg.Policy.TrashMailbox
	}
}
