package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Warnings returns the settings of a valid configuration that are risky
// (secrets in the clear, unverified upstreams, legacy lanes), each naming
// its key and, where the file sets it, its line. They are not errors:
// popbridge runs with them, and says so.
func (cfg *Config) Warnings() []KeyError {
	var ws []KeyError
	warn := func(key, format string, args ...any) {
		w := KeyError{Key: key, Problem: fmt.Sprintf(format, args...)}
		if cfg.src != nil {
			w.Line = lineOf(cfg.src, key)
		}
		ws = append(ws, w)
	}
	if cfg.Auth.AllowPlaintext {
		for i, l := range cfg.Listeners {
			// Behind a PROXY header the clients of a loopback listener are
			// the load balancer's, from anywhere.
			if l.TLS == "implicit" || (IsLoopbackAddress(l.Address) && !l.ProxyProtocol) {
				continue
			}
			warn("auth.allow_plaintext", "listeners.%d (%s, tls: %s) accepts passwords in the clear from other machines", i, l.Address, l.TLS)
		}
	}
	upstream := func(key string, u Upstream) {
		if u.InsecureSkipVerify {
			warn(key+".insecure_skip_verify", "the upstream's certificate is not verified: anyone in between can read every password")
		}
		if u.TLS == "none" && u.Address != "" && !IsLoopbackAddress(u.Address) {
			warn(key+".tls", "none: passwords and mail go to %s in the clear", u.Address)
		}
	}
	upstream("upstream", cfg.Upstream)
	for i, r := range cfg.Routes {
		upstream("routes."+strconv.Itoa(i)+".upstream", r.Upstream)
	}
	if v := cfg.TLS.MinVersion; v == "1.0" || v == "1.1" {
		warn("tls.min_version", "TLS %s is obsolete (RFC 8996); a listener's legacy lane can allow it for old devices' networks only", v)
	}
	for i, p := range cfg.Limits.TrustedProxies {
		if _, n, err := net.ParseCIDR(p); err == nil {
			if ones, _ := n.Mask.Size(); ones == 0 {
				warn("limits.trusted_proxies."+strconv.Itoa(i), "%q trusts every address: any client can send a PROXY header and claim any address", p)
			}
		}
	}
	for i, l := range cfg.Listeners {
		if !l.Legacy.Enabled() {
			continue
		}
		warn("listeners."+strconv.Itoa(i)+".legacy", "legacy lane on %s for %s: %s", l.Address,
			strings.Join(l.Legacy.Networks, ", "), l.Legacy.Describe())
	}
	return ws
}

// Describe says what a legacy lane relaxes, for logs.
func (l Legacy) Describe() string {
	var parts []string
	if l.MinTLSVersion != "" {
		parts = append(parts, "TLS down to "+l.MinTLSVersion)
	}
	if l.AllowPlaintext {
		parts = append(parts, "plaintext login")
	}
	return strings.Join(parts, " and ")
}

// IsLoopbackAddress reports whether host:port names the local machine only
// (a loopback IP address or "localhost"). An empty or wildcard host listens
// everywhere and is not.
func IsLoopbackAddress(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
