package config

import (
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration file. Field tags are the YAML keys of
// config.yaml.example; they are a contract with operators and must not be
// renamed.
type Config struct {
	Listeners     []Listener    `yaml:"listeners"`
	TLS           TLS           `yaml:"tls"`
	Auth          Auth          `yaml:"auth"`
	Upstream      Upstream      `yaml:"upstream"`
	Routes        []Route       `yaml:"routes"`
	Policy        Policy        `yaml:"policy"`
	State         State         `yaml:"state"`
	Limits        Limits        `yaml:"limits"`
	POP3          POP3          `yaml:"pop3"`
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	Log           Log           `yaml:"log"`
	Metrics       Metrics       `yaml:"metrics"`

	src *yaml.Node // the parsed file, for the lines of Warnings
}

// Listener is one address popbridge accepts POP3 clients on.
type Listener struct {
	Address       string `yaml:"address"`
	TLS           string `yaml:"tls"` // none | starttls | implicit
	ProxyProtocol bool   `yaml:"proxy_protocol"`
	// Legacy relaxes the policy on this listener for clients in its
	// networks only: old scanners and devices.
	Legacy Legacy `yaml:"legacy,omitempty"`
}

// Legacy is a listener's lane for old clients that cannot do better: older
// TLS versions and/or plaintext login, only from the listed networks.
type Legacy struct {
	// MinTLSVersion ("1.0" | "1.1" | …) is the lowest TLS version accepted
	// from these networks; "" keeps tls.min_version.
	MinTLSVersion string `yaml:"min_tls_version,omitempty"`
	// AllowPlaintext allows USER/PASS and AUTH without TLS from these
	// networks.
	AllowPlaintext bool `yaml:"allow_plaintext,omitempty"`
	// Networks are the client addresses or CIDRs the lane is for.
	Networks []string `yaml:"networks,omitempty"`
}

// Enabled reports whether the lane relaxes anything.
func (l Legacy) Enabled() bool { return l.MinTLSVersion != "" || l.AllowPlaintext }

// TLS holds the server certificate for STLS and implicit-TLS listeners.
type TLS struct {
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	MinVersion string `yaml:"min_version"`
}

// Auth is the client-facing login policy.
type Auth struct {
	AllowPlaintext bool          `yaml:"allow_plaintext"`
	Mechanisms     []string      `yaml:"mechanisms"`
	FailureDelay   time.Duration `yaml:"failure_delay"`
	// HTTPHook is an nginx auth_http-compatible service asked about every
	// login first: it may refuse it, rewrite it, and choose its server.
	HTTPHook HTTPHook `yaml:"http_hook"`
	// Verify is who checks a user's own credentials when an upstream
	// logs in through a master user: "none", or "upstream" (a login as
	// the user before the master's).
	Verify string `yaml:"verify"`
}

// HTTPHook configures auth.http_hook.
type HTTPHook struct {
	URL     string        `yaml:"url"` // "" for none
	Timeout time.Duration `yaml:"timeout"`
	CAFile  string        `yaml:"ca_file"`
	// Headers go with every request (nginx's auth_http_header), usually
	// a shared secret.
	Headers map[string]string `yaml:"headers" secret:"true"`
}

// Upstream is the IMAP server popbridge logs in to.
type Upstream struct {
	Address            string        `yaml:"address"`
	TLS                string        `yaml:"tls"` // none | starttls | implicit
	CAFile             string        `yaml:"ca_file"`
	InsecureSkipVerify bool          `yaml:"insecure_skip_verify"`
	Mailbox            string        `yaml:"mailbox"`
	ConnectTimeout     time.Duration `yaml:"connect_timeout"`
	CommandTimeout     time.Duration `yaml:"command_timeout"`
	MasterUser         string        `yaml:"master_user"`
	MasterPassword     string        `yaml:"master_password" secret:"true"`
	// MasterSeparator, when set, logs the master user in as
	// "<user><separator><master_user>" with LOGIN (Dovecot's
	// auth_master_user_separator) instead of SASL PLAIN's authzid.
	MasterSeparator string `yaml:"master_separator"`
	OAuth2          OAuth2 `yaml:"oauth2"`
}

// Route sends the users of one mail domain to another IMAP server.
type Route struct {
	// Domain is matched, case-insensitively and exactly, with what follows
	// the last '@' of the POP3 user name.
	Domain string `yaml:"domain"`
	// Upstream is a whole upstream block; the keys it leaves out take the
	// defaults of upstream: (Default), not the default upstream's values.
	// Its mailbox is the route's Mailbox.
	Upstream Upstream `yaml:"upstream"`
	// Mailbox is the mailbox POP3 serves; "" is the default upstream's.
	Mailbox string      `yaml:"mailbox"`
	Policy  RoutePolicy `yaml:"policy"`
}

// RoutePolicy is what a route may change of policy.*; "" keeps the
// value of policy.*.
type RoutePolicy struct {
	OnDele       string `yaml:"on_dele"`
	TrashMailbox string `yaml:"trash_mailbox"`
}

// Policy says what POP3 actions do upstream.
type Policy struct {
	OnDele       string `yaml:"on_dele"` // expunge | trash | hide | keep
	TrashMailbox string `yaml:"trash_mailbox"`
	MarkSeen     bool   `yaml:"mark_seen"`
	Lock         string `yaml:"lock"` // exclusive | none
	UIDLFormat   string `yaml:"uidl_format"`
	// ReuseXUIDL serves a new message's X-UIDL header as its UIDL, for mail
	// migrated from servers that wrote one.
	ReuseXUIDL bool `yaml:"reuse_xuidl"`
	// DeviceSeparator, when set, makes a login USER<sep>DEVICE one device
	// of USER, with its own hidden marks ("" = off).
	DeviceSeparator string `yaml:"device_separator"`
	// NewDevice is what a device's first login lists: all | from_now.
	NewDevice string `yaml:"new_device"`
	// Window limits what every maildrop lists.
	Window Window `yaml:"window"`
	// AnnounceExpire announces in CAPA how long messages stay (EXPIRE).
	AnnounceExpire bool `yaml:"announce_expire"`
	// Folders, when set, are the mailboxes that make one POP3 maildrop,
	// in this order, instead of upstream.mailbox.
	Folders []string `yaml:"folders"`
}

// Window is policy.window; zero values limit nothing.
type Window struct {
	Newest  int   `yaml:"newest"`
	Since   Age   `yaml:"since"`
	MaxSize int64 `yaml:"max_size"`
}

// State is where uidmap keeps UIDLs and leave-on-server marks.
type State struct {
	Driver string `yaml:"driver"` // bolt | postgres | memory
	Path   string `yaml:"path"`   // bolt
	DSN    string `yaml:"dsn" secret:"true"`
	// LockLease is how long a maildrop lock outlives an instance that
	// died holding it (postgres; bolt's locks die with the process).
	LockLease time.Duration `yaml:"lock_lease"`
	// SecretFile holds the key that encrypts secrets kept in the store
	// (upstream OAuth2 grants).
	SecretFile string `yaml:"secret_file"`
}

// Limits protect the proxy and the upstream from single clients.
type Limits struct {
	MaxConnections      int           `yaml:"max_connections"`
	MaxConnectionsPerIP int           `yaml:"max_connections_per_ip"`
	IdleTimeout         time.Duration `yaml:"idle_timeout"`
	AuthFailuresPerIP   int           `yaml:"auth_failures_per_ip"`
	// LoginDelay is the least time between two logins of one user (or
	// device), announced as LOGIN-DELAY; 0 = none.
	LoginDelay     time.Duration `yaml:"login_delay"`
	TrustedProxies []string      `yaml:"trusted_proxies"`
}

// POP3 holds client workarounds.
type POP3 struct {
	// OutlookNoNULs sends NUL bytes in messages as 0x80, as Dovecot's
	// pop3_client_workarounds=outlook-no-nuls does: Outlook hangs on NULs.
	OutlookNoNULs bool `yaml:"outlook_no_nuls"`
}

// Log configures zap.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"` // json | console
}

// Metrics configures the Prometheus and health endpoint.
type Metrics struct {
	Address string `yaml:"address"`
	// ReadyzUpstream makes /readyz also check that the upstream accepts
	// TCP connections (cached for a few seconds).
	ReadyzUpstream bool `yaml:"readyz_upstream"`
}

// Default returns the configuration used for every key a file leaves out.
func Default() *Config {
	return &Config{
		Listeners: []Listener{{Address: "0.0.0.0:110", TLS: "none"}},
		TLS:       TLS{MinVersion: "1.2"},
		Auth: Auth{
			Mechanisms:   []string{"PLAIN", "LOGIN", "OAUTHBEARER", "XOAUTH2"},
			FailureDelay: 2 * time.Second,
			HTTPHook:     HTTPHook{Timeout: 5 * time.Second},
			Verify:       "none",
		},
		Upstream: Upstream{
			TLS:            "implicit",
			Mailbox:        "INBOX",
			ConnectTimeout: 10 * time.Second,
			CommandTimeout: 60 * time.Second,
		},
		Policy: Policy{
			OnDele:       "expunge",
			TrashMailbox: "Trash",
			MarkSeen:     true,
			Lock:         "exclusive",
			UIDLFormat:   "dovecot",
			NewDevice:    "all",
			// popbridge removes nothing on its own: announcing it is true.
			AnnounceExpire: true,
		},
		State: State{Driver: "bolt", Path: "/var/lib/popbridge/state.db", LockLease: 30 * time.Second},
		Limits: Limits{
			MaxConnections:      10000,
			MaxConnectionsPerIP: 50,
			IdleTimeout:         10 * time.Minute,
			AuthFailuresPerIP:   10,
		},
		ShutdownGrace: 30 * time.Second,
		Log:           Log{Level: "info", Format: "json"},
	}
}
