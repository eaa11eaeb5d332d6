package config

import (
	"net/url"
	"strings"
)

// validateHook checks auth.http_hook.
func validateHook(h *HTTPHook, bad func(key, format string, args ...any)) {
	if h.URL == "" {
		return
	}
	if u, err := url.Parse(h.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("auth.http_hook.url", "%q is not an http:// or https:// URL", h.URL)
	}
	if h.Timeout <= 0 {
		bad("auth.http_hook.timeout", "must be a positive duration such as 5s")
	}
	for k := range h.Headers {
		if strings.HasPrefix(strings.ToLower(k), "auth-") || strings.EqualFold(k, "Client-IP") {
			bad("auth.http_hook.headers", "%q is a header of the protocol itself", k)
		}
	}
}

// validateMaster checks an upstream block's master user (key is the
// block's key).
func validateMaster(key string, u *Upstream, auth *Auth, bad func(key, format string, args ...any)) {
	if u.MasterUser == "" && u.MasterPassword == "" {
		if u.MasterSeparator != "" {
			bad(key+".master_separator", "needs %s.master_user", key)
		}
		return
	}
	if u.MasterUser == "" || u.MasterPassword == "" {
		bad(key+".master_user", "master_user and master_password go together")
	}
	// Logged in as the master user, the upstream never checks the POP3
	// user's own password: every password would open every mailbox,
	// unless something else checks it.
	if auth.HTTPHook.URL == "" && auth.Verify != "upstream" {
		bad(key+".master_user", "nothing would check the users' own passwords: set auth.http_hook (the service checks them) "+
			"or auth.verify: upstream (popbridge logs in as the user first, then as the master user)")
	}
	if strings.ContainsAny(u.MasterSeparator, " \t\r\n\"") {
		bad(key+".master_separator", "%q cannot be part of a LOGIN user name", u.MasterSeparator)
	}
}
