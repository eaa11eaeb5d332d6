package imapupstream

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"time"
)

// TLSMode says how the connection to the upstream is secured.
type TLSMode string

// The TLS modes.
const (
	TLSNone     TLSMode = "none"     // plaintext (only for loopback or trusted networks)
	TLSStartTLS TLSMode = "starttls" // plaintext, then STARTTLS before anything else
	TLSImplicit TLSMode = "implicit" // TLS from the first byte (port 993)
)

// Defaults applied by NewDialer to zero Config fields.
const (
	DefaultMailbox        = "INBOX"
	DefaultConnectTimeout = 10 * time.Second
	DefaultCommandTimeout = 60 * time.Second
)

// Config is how to reach and use the upstream IMAP server.
type Config struct {
	Address            string  // host:port
	TLS                TLSMode // "" means implicit
	CAFile             string  // extra CA bundle (PEM) added to the system roots; "" = system roots only
	InsecureSkipVerify bool    // do not verify the server certificate (testing only)
	Mailbox            string  // mailbox to SELECT; default "INBOX"
	// ConnectTimeout bounds dial + TLS + greeting (and STARTTLS, ID); default
	// 10s. The login is a command: CommandTimeout bounds it.
	ConnectTimeout time.Duration
	// CommandTimeout bounds any one command, and any stall while streaming a
	// literal; default 60s. On expiry the connection is closed (ErrUnavailable
	// wrapping context.DeadlineExceeded).
	CommandTimeout time.Duration
	// MasterUser and MasterPassword, when set, log in as every user with SASL
	// PLAIN (authzid = the user, authcid = MasterUser). Credentials.Password
	// and Token are then NOT checked by anyone upstream: whoever calls Login
	// must have authenticated the user by other means, or any password opens
	// any mailbox.
	MasterUser, MasterPassword string
	// MasterSeparator, when set, makes the master user log in with
	// LOGIN "<user><MasterSeparator><MasterUser>" and MasterPassword
	// instead of SASL PLAIN with an authorization identity: Dovecot's
	// auth_master_user_separator, for servers that offer only that.
	MasterSeparator string
	// Observer, when not nil, is told of login and command latencies and
	// of failures, for metrics.
	Observer Observer
}

// Credentials are the user's, passed through to the upstream (or only the
// user name, with a master user).
type Credentials struct {
	Username string
	Password string // for LOGIN / AUTHENTICATE PLAIN
	Token    string // OAuth 2.0 bearer token
	// Mechanism: "" for a password (LOGIN, or AUTHENTICATE PLAIN when the
	// server advertises LOGINDISABLED), "PLAIN" for AUTHENTICATE PLAIN,
	// "OAUTHBEARER" or "XOAUTH2" for a token.
	Mechanism string
	// ClientAddr is the address of the end client the session is for,
	// and ConnectedAddr the address that client connected to, when known.
	// Login tells them to a server that advertises ID (RFC 2971) in its
	// greeting, before logging in, as Dovecot's x-originating-ip/-port and
	// x-connected-ip/-port, so that the server logs, limits and penalises
	// failed logins of the real client rather than of this proxy (Dovecot
	// believes them from addresses in its login_trusted_networks only).
	// It costs one round trip (none with STARTTLS).
	ClientAddr, ConnectedAddr net.Addr
}

// String never shows the password or token.
func (c Credentials) String() string {
	mech := c.Mechanism
	if mech == "" {
		mech = "password"
	}
	return fmt.Sprintf("%s (%s)", c.Username, mech)
}

// GoString never shows the password or token either (%#v).
func (c Credentials) GoString() string { return "imapupstream.Credentials{" + c.String() + "}" }

// withDefaults validates cfg and fills in defaults.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Address == "" {
		return cfg, fmt.Errorf("%w: upstream address is empty", ErrConfig)
	}
	if _, _, err := net.SplitHostPort(cfg.Address); err != nil {
		return cfg, fmt.Errorf("%w: upstream address %q: %v", ErrConfig, cfg.Address, err)
	}
	switch cfg.TLS {
	case "":
		cfg.TLS = TLSImplicit
	case TLSNone, TLSStartTLS, TLSImplicit:
	default:
		return cfg, fmt.Errorf("%w: upstream tls %q: want none, starttls or implicit", ErrConfig, cfg.TLS)
	}
	if cfg.Mailbox == "" {
		cfg.Mailbox = DefaultMailbox
	}
	if cfg.ConnectTimeout < 0 || cfg.CommandTimeout < 0 {
		return cfg, fmt.Errorf("%w: negative timeout", ErrConfig)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.CommandTimeout == 0 {
		cfg.CommandTimeout = DefaultCommandTimeout
	}
	if (cfg.MasterUser == "") != (cfg.MasterPassword == "") {
		return cfg, fmt.Errorf("%w: master_user and master_password go together", ErrConfig)
	}
	if cfg.MasterSeparator != "" && cfg.MasterUser == "" {
		return cfg, fmt.Errorf("%w: a master separator needs a master user", ErrConfig)
	}
	return cfg, nil
}

// tlsConfig builds the client TLS configuration: system roots plus CAFile,
// ServerName from the address' host.
func (cfg Config) tlsConfig() (*tls.Config, error) {
	host, _, _ := net.SplitHostPort(cfg.Address)
	tc := &tls.Config{
		ServerName:         host,
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: cfg.InsecureSkipVerify,
	}
	if cfg.CAFile == "" {
		return tc, nil // nil RootCAs: the system roots
	}
	pem, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("%w: upstream ca_file: %v", ErrConfig, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: upstream ca_file %s: no PEM certificate in it", ErrConfig, cfg.CAFile)
	}
	tc.RootCAs = pool
	return tc, nil
}
