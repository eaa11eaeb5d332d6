package pop3

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-sasl"
	"go.uber.org/zap"
)

// SASL authentication: the AUTH command of RFC 5034. The mechanisms collect
// Credentials; the exchange then ends in the same login path as USER/PASS,
// so the backend, the response codes, FailureDelay and LoginLimiter work the
// same whatever the client used.

// mechanism is one SASL mechanism the server knows.
type mechanism struct {
	name string
	// plaintext: the client sends a reusable secret (a password or a
	// bearer token) in the clear, so the mechanism follows AllowPlaintext
	// like USER/PASS. All the mechanisms we have do.
	plaintext bool
	// errorChallenge, when not nil, is sent as a "+ " continuation when
	// the backend refused the credentials ([AUTH]); the client answers
	// (with anything: an empty line, "AQ==", "*") and then gets the -ERR.
	// That is the failure exchange of RFC 7628 section 3.2.3 (OAUTHBEARER)
	// and of Google's XOAUTH2.
	errorChallenge []byte
	// newServer starts an exchange that fills cred when it succeeds.
	newServer func(cred *Credentials) sasl.Server
}

// The bearer error challenges. The status of OAUTHBEARER is the OAuth 2.0
// error code (RFC 6750); XOAUTH2 uses the HTTP status as Google does.
const (
	oauthBearerErrorJSON = `{"status":"invalid_token","schemes":"bearer"}`
	xoauth2ErrorJSON     = `{"status":"401","schemes":"bearer"}`
)

var knownMechanisms = [...]*mechanism{
	{
		name:      sasl.Plain,
		plaintext: true,
		newServer: func(cred *Credentials) sasl.Server {
			return sasl.NewPlainServer(func(identity, username, password string) error {
				cred.AuthzID, cred.Username, cred.Password = identity, username, password
				return nil
			})
		},
	},
	{
		name:      sasl.Login,
		plaintext: true,
		newServer: func(cred *Credentials) sasl.Server {
			return &loginServer{set: func(username, password string) {
				cred.Username, cred.Password = username, password
			}}
		},
	},
	{
		name:           sasl.OAuthBearer,
		plaintext:      true,
		errorChallenge: []byte(oauthBearerErrorJSON),
		newServer: func(cred *Credentials) sasl.Server {
			return &gs2FailGuard{Server: sasl.NewOAuthBearerServer(func(o sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
				if o.Token == "" {
					return &sasl.OAuthBearerError{Status: "invalid_request", Schemes: "bearer"}
				}
				// The gs2 "a=" field names the user whose maildrop is
				// wanted: that is the login name the backend needs.
				cred.Username, cred.Token = o.Username, o.Token
				return nil
			})}
		},
	},
	{
		name:           mechXOAuth2,
		plaintext:      true,
		errorChallenge: []byte(xoauth2ErrorJSON),
		newServer: func(cred *Credentials) sasl.Server {
			return &xoauth2Server{set: func(user, token string) {
				cred.Username, cred.Token = user, token
			}}
		},
	},
}

// SupportedMechanisms returns the names of the SASL mechanisms this package
// implements, for Server.Mechanisms: PLAIN, LOGIN, OAUTHBEARER, XOAUTH2.
func SupportedMechanisms() []string {
	names := make([]string, len(knownMechanisms))
	for i, m := range knownMechanisms {
		names[i] = m.name
	}
	return names
}

// defaultMechanisms is what a nil Server.Mechanisms offers.
var defaultMechanisms = []string{sasl.Plain, sasl.Login}

// resolveMechanisms maps mechanism names to mechanisms, in order, without
// duplicates. It returns the known ones and an error naming the first
// unknown one.
func resolveMechanisms(names []string) ([]*mechanism, error) {
	if names == nil {
		names = defaultMechanisms
	}
	var out []*mechanism
	var err error
	for _, name := range names {
		m := lookupMechanism(knownMechanisms[:], name)
		if m == nil {
			if err == nil {
				err = fmt.Errorf("pop3: unknown SASL mechanism %q (supported: %s)",
					name, strings.Join(SupportedMechanisms(), ", "))
			}
			continue
		}
		if lookupMechanism(out, name) == nil {
			out = append(out, m)
		}
	}
	return out, err
}

func lookupMechanism(mechs []*mechanism, name string) *mechanism {
	for _, m := range mechs {
		if strings.EqualFold(m.name, name) {
			return m
		}
	}
	return nil
}

// usableMechanisms returns the mechanisms a client may use on this
// connection as it is now: CAPA, bare AUTH and AUTH itself agree on them.
func (c *conn) usableMechanisms() []*mechanism {
	if c.plaintextAllowed() {
		return c.cfg.mechs
	}
	var out []*mechanism
	for _, m := range c.cfg.mechs {
		if !m.plaintext {
			out = append(out, m)
		}
	}
	return out
}

// maxSASLSteps bounds the challenges of one exchange; our mechanisms need
// at most two (LOGIN), the bearer error challenge aside.
const maxSASLSteps = 4

// cmdAUTH runs "AUTH" (list the mechanisms) and "AUTH mechanism
// [initial-response]" (RFC 5034).
func (c *conn) cmdAUTH(rest string) {
	c.user = "" // AUTH starts afresh, like USER
	args := splitArgs(rest)
	if len(args) == 0 {
		// Not in RFC 5034, but Outlook sends a bare AUTH to learn the
		// mechanisms and Dovecot answers it this way.
		c.ok("")
		for _, m := range c.usableMechanisms() {
			c.writeString(m.name)
			c.writeString("\r\n")
		}
		c.writeString(".\r\n")
		return
	}
	if len(args) > 2 {
		c.fail("", "usage: AUTH mechanism [initial-response]")
		c.badCommand()
		return
	}
	mech := lookupMechanism(c.cfg.mechs, args[0])
	if mech == nil {
		// Not counted as bad: a client may try a mechanism it prefers
		// before falling back (LoginTimeout bounds the tries).
		c.fail("", "unsupported authentication mechanism")
		return
	}
	if mech.plaintext && c.refusePlaintext() {
		return // before any continuation: no secret is asked for
	}
	var resp []byte // nil: no initial response
	if len(args) == 2 {
		if args[1] == "=" {
			resp = []byte{} // RFC 5034: "=" is an empty initial response
		} else {
			var ok bool
			if resp, ok = decodeSASL(args[1]); !ok {
				c.fail("", "invalid base64 data")
				c.badCommand()
				return
			}
		}
	}

	cred := &Credentials{Mechanism: mech.name}
	srv := mech.newServer(cred)
	for step := 0; ; step++ {
		challenge, done, err := srv.Next(resp)
		if err != nil {
			c.log.Debug("SASL exchange failed", zap.String("mechanism", mech.name), zap.Error(err))
			c.fail("", "invalid SASL response")
			c.badCommand()
			return
		}
		if done {
			break
		}
		if step == maxSASLSteps {
			c.fail("", "SASL exchange too long")
			c.badCommand()
			return
		}
		c.sendChallenge(challenge)
		line, ok := c.readAuthLine()
		if !ok {
			return
		}
		if string(line) == "*" {
			c.fail("", "authentication aborted by client")
			return
		}
		if resp, ok = decodeSASL(string(line)); !ok {
			c.fail("", "invalid base64 data")
			c.badCommand()
			return
		}
	}
	c.login(cred, mech.errorChallenge)
}

// sendChallenge writes a "+ base64" continuation (RFC 5034 section 4) and
// flushes it unless more input is already waiting.
func (c *conn) sendChallenge(challenge []byte) {
	c.writeString("+ ")
	c.writeString(base64.StdEncoding.EncodeToString(challenge))
	c.writeString("\r\n")
	if c.br.Buffered() == 0 {
		c.flush()
	}
}

// readAuthLine reads a client's answer to a continuation, up to
// MaxAuthLineLength. It reports false when the exchange is over: the
// connection failed (the loop ends) or the line was too long (answered).
func (c *conn) readAuthLine() ([]byte, bool) {
	if c.werr != nil {
		return nil, false
	}
	line, tooLong, err := c.readLine(c.cfg.authLine)
	if err != nil {
		c.readFailed(err)
		c.closing = true
		return nil, false
	}
	if tooLong {
		c.fail("", "line too long")
		c.badCommand()
		return nil, false
	}
	return line, true
}

// bearerFailure runs the failure exchange of a bearer mechanism: the error
// challenge, then whatever the client answers. It reports false when the
// connection failed meanwhile.
func (c *conn) bearerFailure(challenge []byte) bool {
	c.sendChallenge(challenge)
	if c.werr != nil {
		return false
	}
	// What the client answers does not matter, even if over-long.
	if _, _, err := c.readLine(c.cfg.authLine); err != nil {
		c.readFailed(err)
		c.closing = true
		return false
	}
	return true
}

// decodeSASL decodes a client response. Padding may be left out, which some
// clients do.
func decodeSASL(s string) ([]byte, bool) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil && len(s)%4 != 0 {
		b, err = base64.RawStdEncoding.Strict().DecodeString(s)
	}
	if err != nil {
		return nil, false
	}
	if b == nil {
		b = []byte{} // a response, even if empty, is never "no response"
	}
	return b, true
}

// gs2FailGuard wraps go-sasl's OAUTHBEARER server. After it sent its error
// challenge, RFC 7628 wants the client to answer %x01, and go-sasl indexes
// the answer without checking its length: an empty answer (what XOAUTH2
// clients send, and a natural mistake) would panic. An empty answer is
// passed on as %x01; the exchange fails either way.
type gs2FailGuard struct {
	sasl.Server
	failing bool
}

func (g *gs2FailGuard) Next(resp []byte) ([]byte, bool, error) {
	if g.failing && len(resp) == 0 {
		resp = []byte{0x01}
	}
	challenge, done, err := g.Server.Next(resp)
	g.failing = err == nil && !done && len(challenge) > 0
	return challenge, done, err
}

// errUnexpectedResponse is what our own mechanisms return for a response
// after the end of their exchange.
var errUnexpectedResponse = errors.New("sasl: unexpected client response")
