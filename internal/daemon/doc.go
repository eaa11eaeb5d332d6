// Package daemon is `popbridge serve` behind its command line: it builds the
// POP3 server (pop3.Server), the backend (proxy.Backend, with its upstream
// dialer and uidmap.Map) and the state store from a config.Config, binds the
// listeners and serves until its context ends, then drains for
// shutdown_grace.
//
//	log, level, _ := daemon.NewLogger(os.Stderr, cfg.Log.Level, cfg.Log.Format)
//	reload, stop := daemon.Reloads() // SIGHUP
//	defer stop()
//	err := daemon.Run(ctx, cfg, log, daemon.Options{ConfigPath: path, Environ: os.Environ(),
//		Level: &level, Reload: reload, Version: version})
//
// What it does on top of the packages it puts together:
//
//   - Reloads (reload.go): each value on Options.Reload reads the file
//     again and applies what changed and can change safely, for new
//     connections and sessions; keys that need a restart (listeners,
//     state.*, …) are logged and kept. A file that does not load is
//     rejected as a whole.
//   - TLS (tls.go): the certificate and tls.min_version in force are read
//     at every handshake, so a reload reaches the next connection; a
//     listener's legacy lane lets older TLS, and plaintext logins, in from
//     its networks only.
//   - The login limiter (limiter.go): limits.auth_failures_per_ip per
//     client address, replaced when a reload changes it.
//   - limits.trusted_proxies for PROXY protocol listeners, and the metrics
//     and health endpoint of internal/metrics.
//
// The other subcommands open the same state store (OpenStore) and upstream
// dialer (NewDialer) as serve does.
package daemon
