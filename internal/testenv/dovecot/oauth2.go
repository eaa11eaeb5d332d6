package dovecot

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
)

// WithOAuth2 lets users log in with XOAUTH2 and OAUTHBEARER: Dovecot's oauth2
// passdb checks bearer tokens against a token-info endpoint that the test
// process serves; Server.IssueToken makes tokens it accepts. Passwords keep
// working.
func WithOAuth2() Option { return func(o *options) { o.oauth2 = true } }

// tokenInfo is the token-info endpoint: GET ?access_token=TOKEN answers
// {"email": user, "active": "true"} for issued tokens and 401 otherwise.
type tokenInfo struct {
	srv    *httptest.Server
	mu     sync.Mutex
	tokens map[string]string // token → user
}

func newTokenInfo() *tokenInfo {
	ti := &tokenInfo{tokens: make(map[string]string)}
	ti.srv = httptest.NewServer(http.HandlerFunc(ti.serve))
	return ti
}

func (ti *tokenInfo) serve(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("access_token")
	ti.mu.Lock()
	user, ok := ti.tokens[token]
	ti.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(map[string]string{"error": "invalid_token"})
		return
	}
	json.NewEncoder(w).Encode(map[string]string{"email": user, "active": "true"})
}

func (ti *tokenInfo) config() string {
	return "tokeninfo_url = " + ti.srv.URL + "/tokeninfo?access_token=\n" +
		"username_attribute = email\n" +
		"active_attribute = active\n" +
		"active_value = true\n"
}

// IssueToken returns a new bearer token that logs in as user (WithOAuth2).
func (s *Server) IssueToken(user string) string {
	if s.tokenInfo == nil {
		panic("dovecot: IssueToken needs WithOAuth2")
	}
	var b [16]byte
	rand.Read(b[:])
	token := "dvt-" + hex.EncodeToString(b[:])
	s.tokenInfo.mu.Lock()
	s.tokenInfo.tokens[token] = user
	s.tokenInfo.mu.Unlock()
	return token
}
