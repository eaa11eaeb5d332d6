package config

import (
	"strconv"
	"strings"
	"time"
)

// validateViews checks the keys of maildrop views: devices, the window
// and limits.login_delay.
func validateViews(cfg *Config, bad func(key, format string, args ...any)) {
	p := &cfg.Policy
	if sep := p.DeviceSeparator; sep != "" {
		switch {
		case strings.ContainsAny(sep, " \t\r\n\"\\"):
			bad("policy.device_separator", "%q cannot be part of a POP3 user name", sep)
		case strings.Contains(sep, "@"):
			bad("policy.device_separator", "%q would split user@domain names; use e.g. \"#\"", sep)
		}
	}
	if p.NewDevice == "" {
		p.NewDevice = "all"
	}
	switch p.NewDevice {
	case "all":
	case "from_now":
		if p.DeviceSeparator == "" {
			bad("policy.new_device", "from_now is for device logins: set policy.device_separator too")
		}
	default:
		bad("policy.new_device", "%q is not one of all, from_now", p.NewDevice)
	}
	w := p.Window
	if w.Newest < 0 {
		bad("policy.window.newest", "must not be negative")
	}
	if w.Since < 0 || (w.Since > 0 && time.Duration(w.Since) < 24*time.Hour) {
		bad("policy.window.since", "must be at least 1d: IMAP searches arrival dates in whole days")
	}
	if w.MaxSize < 0 {
		bad("policy.window.max_size", "must not be negative")
	}
	seen := make(map[string]bool, len(p.Folders))
	for i, f := range p.Folders {
		switch {
		case strings.TrimSpace(f) == "":
			bad("policy.folders."+strconv.Itoa(i), "must name a mailbox")
		case seen[f]:
			bad("policy.folders."+strconv.Itoa(i), "%q is listed twice", f)
		}
		seen[f] = true
	}
	if cfg.Limits.LoginDelay < 0 {
		bad("limits.login_delay", "must not be negative")
	}
}
