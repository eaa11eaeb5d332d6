package pop3

import (
	"bytes"
	"errors"
	"strings"
)

// mechXOAuth2 is Google's XOAUTH2 mechanism, which Gmail, Outlook.com and
// many clients use for OAuth 2.0 bearer tokens (it predates OAUTHBEARER,
// RFC 7628). See https://developers.google.com/gmail/imap/xoauth2-protocol.
const mechXOAuth2 = "XOAUTH2"

// xoauth2Server is the server side of XOAUTH2. The client's one response
// (usually the initial response) is
//
//	"user=" user "\x01auth=Bearer " token "\x01\x01"
//
// A refused token gets the error continuation of mechanism.errorChallenge;
// a response in another format fails at once, as a protocol error.
type xoauth2Server struct {
	done bool
	set  func(user, token string)
}

func (s *xoauth2Server) Next(resp []byte) (challenge []byte, done bool, err error) {
	if s.done {
		return nil, false, errUnexpectedResponse
	}
	if resp == nil {
		return []byte{}, false, nil // no initial response: ask for it
	}
	s.done = true
	user, token, err := parseXOAuth2(resp)
	if err != nil {
		return nil, false, err
	}
	s.set(user, token)
	return nil, true, nil
}

// parseXOAuth2 parses an XOAUTH2 client response: key=value fields ended by
// 0x01, of which "user" and "auth" (token type "Bearer", case-insensitive)
// are required; other fields are ignored.
func parseXOAuth2(resp []byte) (user, token string, err error) {
	var haveUser, haveAuth bool
	for _, field := range bytes.Split(resp, []byte{0x01}) {
		if len(field) == 0 {
			continue // the empty fields before the final 0x01s
		}
		key, value, ok := bytes.Cut(field, []byte{'='})
		if !ok {
			return "", "", errors.New("xoauth2: field without '='")
		}
		switch string(key) {
		case "user":
			user, haveUser = string(value), true
		case "auth":
			const prefix = "bearer "
			if len(value) <= len(prefix) || !strings.EqualFold(string(value[:len(prefix)]), prefix) {
				return "", "", errors.New("xoauth2: auth is not a bearer token")
			}
			token, haveAuth = string(value[len(prefix):]), true
		}
	}
	if !haveUser || !haveAuth {
		return "", "", errors.New("xoauth2: user or auth missing")
	}
	return user, token, nil
}
