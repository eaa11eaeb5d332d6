package imapupstream

import (
	"errors"

	"github.com/emersion/go-sasl"
)

// Xoauth2 is the name of Google's and Microsoft's bearer-token SASL mechanism.
const Xoauth2 = "XOAUTH2"

// NewXOAUTH2Client returns a SASL client for XOAUTH2: the initial response is
// "user=" user ^A "auth=Bearer " token ^A ^A. On failure the server sends a
// JSON error as a challenge; the client answers it with an empty response,
// as the mechanism requires, so that the server ends the exchange. (go-imap
// sends an empty response as "=", which some servers, Dovecot among them,
// answer with BAD rather than NO; Login reports either as ErrAuthFailed.)
func NewXOAUTH2Client(username, token string) sasl.Client {
	return &xoauth2Client{username: username, token: token}
}

type xoauth2Client struct {
	username, token string
	challenged      bool
}

func (c *xoauth2Client) Start() (mech string, ir []byte, err error) {
	ir = make([]byte, 0, len(c.username)+len(c.token)+20)
	ir = append(ir, "user="...)
	ir = append(ir, c.username...)
	ir = append(ir, "\x01auth=Bearer "...)
	ir = append(ir, c.token...)
	ir = append(ir, "\x01\x01"...)
	return Xoauth2, ir, nil
}

func (c *xoauth2Client) Next(challenge []byte) ([]byte, error) {
	if c.challenged {
		return nil, errors.New("XOAUTH2: unexpected second challenge")
	}
	c.challenged = true
	return []byte{}, nil
}

// oauthBearerClient wraps go-sasl's OAUTHBEARER client, which returns an
// error on the server's error challenge and so leaves the exchange hanging.
// RFC 7628 section 3.2.3: the client answers the error challenge with a
// single ^A, and the server then fails the command.
type oauthBearerClient struct {
	sasl.Client
	challenged bool
}

func (c *oauthBearerClient) Next(challenge []byte) ([]byte, error) {
	if c.challenged {
		return nil, errors.New("OAUTHBEARER: unexpected second challenge")
	}
	c.challenged = true
	return []byte{0x01}, nil
}
