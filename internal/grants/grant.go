package grants

import (
	"fmt"
	"time"

	"golang.org/x/oauth2"
)

// Key names a grant: the upstream it is for (its address, as uidmap keys
// name maildrops) and the user, as the POP3 client names itself.
type Key struct {
	Upstream string
	User     string
}

// Grant is what the provider issued for one user.
type Grant struct {
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token"`
	TokenType    string    `json:"token_type,omitempty"`
	Expiry       time.Time `json:"expiry"`
	// Broken, when set, is why the provider refused the refresh token: the
	// user must be enrolled again.
	Broken string `json:"broken,omitempty"`
	// Enrolled is when the user approved the grant, Refreshed when it was
	// last refreshed.
	Enrolled  time.Time `json:"enrolled"`
	Refreshed time.Time `json:"refreshed,omitzero"`
}

// FromToken is the grant of a token just obtained (device flow).
func FromToken(tok *oauth2.Token, now time.Time) Grant {
	return Grant{
		AccessToken:  tok.AccessToken,
		RefreshToken: tok.RefreshToken,
		TokenType:    tok.TokenType,
		Expiry:       tok.Expiry,
		Enrolled:     now,
	}
}

// Token is the grant as x/oauth2 takes it.
func (g Grant) Token() *oauth2.Token {
	return &oauth2.Token{AccessToken: g.AccessToken, RefreshToken: g.RefreshToken, TokenType: g.TokenType, Expiry: g.Expiry}
}

// String describes the grant without its tokens, so that a grant that
// ends up in a log line or an error message gives nothing away.
func (g Grant) String() string {
	if g.Broken != "" {
		return "grant(broken: " + g.Broken + ")"
	}
	return fmt.Sprintf("grant(expires %s)", g.Expiry.UTC().Format(time.RFC3339))
}

// GoString is String, for %#v.
func (g Grant) GoString() string { return g.String() }
