package metrics

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/uidmap"
)

const namespace = "popbridge"

// Metrics holds the collectors and the registry they are registered on.
type Metrics struct {
	Registry *prometheus.Registry

	sessionsActive     *prometheus.GaugeVec
	sessionsTotal      *prometheus.CounterVec
	sessionsEnded      *prometheus.CounterVec
	tlsHandshakes      *prometheus.CounterVec
	tlsHandshakeErrors *prometheus.CounterVec
	logins             *prometheus.CounterVec
	commands           *prometheus.CounterVec
	sentBytes          prometheus.Counter
	refused            *prometheus.CounterVec

	upstreamConnect  *prometheus.HistogramVec
	upstreamCommand  *prometheus.HistogramVec
	upstreamErrors   *prometheus.CounterVec
	uidlsAssigned    prometheus.Counter
	uidlsReidentifed prometheus.Counter
	lockContention   prometheus.Counter
	leasesLost       prometheus.Counter
	hookAnswers      *prometheus.CounterVec
	oauth2Refreshes  *prometheus.CounterVec // oauth2.go

	reloads       *prometheus.CounterVec
	reloadSuccess prometheus.Gauge
}

// Refusal reasons of popbridge_connections_refused_total: pop3's.
var refuseReasons = []string{pop3.RefuseMaxConnections, pop3.RefusePerIP, pop3.RefuseLoginLimiter, pop3.RefuseShuttingDown,
	pop3.RefuseUntrustedProxy, pop3.RefuseProxyHeader}

// Login results of popbridge_logins_total: pop3's.
var loginResults = []string{pop3.LoginOK, pop3.LoginAuth, pop3.LoginInUse, pop3.LoginSysTemp, pop3.LoginSysPerm,
	pop3.LoginDelay, pop3.LoginShuttingDown, pop3.LoginOther}

// Kinds of popbridge_upstream_errors_total.
const (
	KindUnavailable    = "unavailable"     // connection failed, closed, BYE, [UNAVAILABLE]
	KindTimeout        = "timeout"         // connect or command timeout
	KindInUse          = "in_use"          // [INUSE]
	KindNoMailbox      = "no_mailbox"      // the mailbox does not exist
	KindNoSuchMessage  = "no_such_message" // expunged by another client
	KindMailboxChanged = "mailbox_changed" // UIDVALIDITY changed during a session
	KindConfig         = "config"          // the configuration does not fit the server
	KindOther          = "other"           // NO/BAD to a command
)

var upstreamKinds = []string{KindUnavailable, KindTimeout, KindInUse, KindNoMailbox, KindNoSuchMessage,
	KindMailboxChanged, KindConfig, KindOther}

var upstreamOps = []string{"select", "snapshot", "identify", "fetch", "top", "mark_seen", "add_keyword", "search_keyword", "delete"}

// New registers every metric on a new registry, with the Go runtime and
// process collectors and popbridge_build_info{version}.
func New(version string) *Metrics {
	r := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { r.MustRegister(c) }
	m := &Metrics{Registry: r}

	m.sessionsActive = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "sessions_active",
		Help: "POP3 connections open now (admitted within the connection limits), by listener.",
	}, []string{"listener"})
	m.sessionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "sessions_total",
		Help: "POP3 connections admitted, by listener and its TLS mode (none, starttls, implicit).",
	}, []string{"listener", "tls"})
	m.sessionsEnded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "sessions_ended_total",
		Help: "POP3 sessions ended, by how: quit, update_ok, update_failed, dropped, timeout, refused, bad_commands, shutdown, error.",
	}, []string{"end"})
	m.tlsHandshakes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "tls_handshakes_total",
		Help: "Completed client TLS handshakes (implicit TLS and STLS), by listener and TLS version.",
	}, []string{"listener", "version"})
	m.tlsHandshakeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "tls_handshake_errors_total",
		Help: "Failed client TLS handshakes, by listener.",
	}, []string{"listener"})
	m.logins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "logins_total",
		Help: "POP3 login attempts by result: ok, auth (bad credentials), in_use, sys_temp, sys_perm, login_delay (rate limited), shutting_down, other.",
	}, []string{"result"})
	m.commands = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "commands_total",
		Help: "POP3 commands answered, by command and result (ok, err).",
	}, []string{"command", "result"})
	m.sentBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "sent_bytes_total",
		Help: "Octets sent to POP3 clients.",
	})
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "connections_refused_total",
		Help: "POP3 connections refused or closed at login, by reason: max_connections, per_ip, login_limiter, shutting_down, untrusted_proxy (a proxy_protocol listener, from outside limits.trusted_proxies), proxy_header (no valid PROXY header in time).",
	}, []string{"reason"})

	buckets := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	m.upstreamConnect = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "upstream_connect_duration_seconds",
		Help:    "Time to connect and log in to the upstream IMAP server (dial, TLS, greeting, login), by result (ok, auth, error).",
		Buckets: buckets,
	}, []string{"result"})
	m.upstreamCommand = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "upstream_command_duration_seconds",
		Help:    "Time of upstream IMAP operations until their answer (the start of the message for fetch and top), by operation.",
		Buckets: buckets,
	}, []string{"op"})
	m.upstreamErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "upstream_errors_total",
		Help: "Upstream IMAP failures by kind: unavailable, timeout, in_use, no_mailbox, no_such_message, mailbox_changed, config, other.",
	}, []string{"kind"})
	m.uidlsAssigned = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "uidls_assigned_total",
		Help: "New UIDLs given to messages seen for the first time.",
	})
	m.uidlsReidentifed = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "uidls_reidentified_total",
		Help: "Messages that kept their UIDL after an upstream UIDVALIDITY change, recognised by fingerprint.",
	})
	m.lockContention = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "maildrop_lock_contention_total",
		Help: "Logins refused [IN-USE] because another session held the maildrop lock.",
	})
	m.leasesLost = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "maildrop_lock_lost_total",
		Help: "Sessions ended without writing because their maildrop lock's lease was lost (the shared store could not renew it in time, or another session took it over).",
	})
	m.hookAnswers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "auth_hook_answers_total",
		Help: "Answers of the auth hook (auth.http_hook) by result: ok, refused, unavailable (down, slow or no Auth-Status: the login failed [SYS/TEMP]).",
	}, []string{"result"})
	m.oauth2Refreshes = newOAuth2Refreshes()
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "config_reloads_total",
		Help: "Configuration reloads (SIGHUP) by result: ok, error (the running configuration was kept).",
	}, []string{"result"})
	m.reloadSuccess = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "config_last_reload_successful",
		Help: "1 if the last configuration reload succeeded (or none was tried), 0 if it was rejected.",
	})
	m.reloadSuccess.Set(1)
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help: "Always 1; the version label says which popbridge runs.",
	}, []string{"version"})
	build.WithLabelValues(version).Set(1)

	for _, c := range []prometheus.Collector{m.sessionsActive, m.sessionsTotal, m.sessionsEnded, m.tlsHandshakes,
		m.tlsHandshakeErrors, m.logins, m.commands, m.sentBytes, m.refused, m.upstreamConnect, m.upstreamCommand,
		m.upstreamErrors, m.uidlsAssigned, m.uidlsReidentifed, m.lockContention, m.leasesLost, m.hookAnswers, m.oauth2Refreshes, m.reloads, m.reloadSuccess, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	// Series that exist from the start, at 0, so that rates and alerts
	// work before the first event.
	for _, r := range refuseReasons {
		m.refused.WithLabelValues(r)
	}
	for _, r := range loginResults {
		m.logins.WithLabelValues(r)
	}
	for _, k := range upstreamKinds {
		m.upstreamErrors.WithLabelValues(k)
	}
	for _, r := range []string{"ok", "error"} {
		m.reloads.WithLabelValues(r)
	}
	for _, r := range []string{proxy.HookOK, proxy.HookRefused, proxy.HookUnavailable} {
		m.hookAnswers.WithLabelValues(r)
	}
	return m
}

// Listener makes a listener's series exist at 0 from the start.
func (m *Metrics) Listener(name string, mode pop3.TLSMode) {
	m.sessionsActive.WithLabelValues(name)
	m.sessionsTotal.WithLabelValues(name, mode.String())
}

// Reloaded counts a configuration reload.
func (m *Metrics) Reloaded(ok bool) {
	if ok {
		m.reloads.WithLabelValues("ok").Inc()
		m.reloadSuccess.Set(1)
	} else {
		m.reloads.WithLabelValues("error").Inc()
		m.reloadSuccess.Set(0)
	}
}

// POP3 returns the pop3.Observer that feeds the session metrics.
func (m *Metrics) POP3() pop3.Observer { return pop3Observer{m} }

// Upstream returns the imapupstream.Observer that feeds the upstream
// metrics.
func (m *Metrics) Upstream() imapupstream.Observer { return upstreamObserver{m} }

// Proxy returns the proxy.Observer that feeds the UIDL and lock metrics.
func (m *Metrics) Proxy() proxy.Observer { return proxyObserver{m} }

type pop3Observer struct{ m *Metrics }

func (o pop3Observer) ConnOpened(ci *pop3.ConnInfo, mode pop3.TLSMode) {
	o.m.sessionsActive.WithLabelValues(ci.Listener).Inc()
	o.m.sessionsTotal.WithLabelValues(ci.Listener, mode.String()).Inc()
}

func (o pop3Observer) ConnRefused(_ *pop3.ConnInfo, reason string) {
	o.m.refused.WithLabelValues(reason).Inc()
}

func (o pop3Observer) TLSHandshake(ci *pop3.ConnInfo, err error) {
	if err != nil {
		o.m.tlsHandshakeErrors.WithLabelValues(ci.Listener).Inc()
		return
	}
	o.m.tlsHandshakes.WithLabelValues(ci.Listener, pop3.TLSVersionName(ci.TLS)).Inc()
}

func (o pop3Observer) Login(_ *pop3.ConnInfo, result string) {
	o.m.logins.WithLabelValues(result).Inc()
}

func (o pop3Observer) Command(name string, ok bool) {
	result := "ok"
	if !ok {
		result = "err"
	}
	o.m.commands.WithLabelValues(name, result).Inc()
}

func (o pop3Observer) BytesSent(n int) { o.m.sentBytes.Add(float64(n)) }

func (o pop3Observer) SessionEnded(s *pop3.SessionSummary) {
	o.m.sessionsActive.WithLabelValues(s.Info.Listener).Dec()
	o.m.sessionsEnded.WithLabelValues(s.End).Inc()
}

type upstreamObserver struct{ m *Metrics }

func (o upstreamObserver) LoginDone(d time.Duration, err error) {
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, imapupstream.ErrAuthFailed):
		result = "auth"
	default:
		result = "error"
		o.m.countUpstreamError(err)
	}
	o.m.upstreamConnect.WithLabelValues(result).Observe(d.Seconds())
}

func (o upstreamObserver) CommandDone(op string, d time.Duration, err error) {
	o.m.upstreamCommand.WithLabelValues(op).Observe(d.Seconds())
	o.m.countUpstreamError(err)
}

func (o upstreamObserver) StreamFailed(err error) { o.m.countUpstreamError(err) }

// countUpstreamError counts err by kind. Cancellations are not the
// upstream's failures (the POP3 client went away, or we shut down).
func (m *Metrics) countUpstreamError(err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		return
	}
	if k := UpstreamErrorKind(err); k != "" {
		m.upstreamErrors.WithLabelValues(k).Inc()
	}
}

// UpstreamErrorKind classifies an upstream error for
// popbridge_upstream_errors_total; "" for refused credentials, which are
// the client's, not the upstream's, failure.
func UpstreamErrorKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, imapupstream.ErrAuthFailed):
		return ""
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return KindTimeout
	case errors.Is(err, imapupstream.ErrInUse):
		return KindInUse
	case errors.Is(err, imapupstream.ErrNoSuchMessage):
		return KindNoSuchMessage
	case errors.Is(err, imapupstream.ErrMailboxChanged):
		return KindMailboxChanged
	case errors.Is(err, imapupstream.ErrNoMailbox):
		return KindNoMailbox
	case errors.Is(err, imapupstream.ErrConfig):
		return KindConfig
	case errors.Is(err, imapupstream.ErrUnavailable):
		return KindUnavailable
	}
	return KindOther
}

type proxyObserver struct{ m *Metrics }

func (o proxyObserver) Resolved(v *uidmap.View) {
	if v.Assigned > 0 {
		o.m.uidlsAssigned.Add(float64(v.Assigned))
	}
	if v.Kept > 0 {
		o.m.uidlsReidentifed.Add(float64(v.Kept))
	}
}

func (o proxyObserver) LockContended() { o.m.lockContention.Inc() }

func (o proxyObserver) LeaseLost() { o.m.leasesLost.Inc() }

func (o proxyObserver) HookAnswered(result string) { o.m.hookAnswers.WithLabelValues(result).Inc() }
