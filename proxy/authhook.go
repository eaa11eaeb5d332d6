package proxy

import (
	"context"
	"errors"
	"net"
	"strings"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/internal/authhook"
	"github.com/popbridge/popbridge/pop3"
)

// Hook is an authentication and routing service asked about every login
// before the upstream is (auth.http_hook; *authhook.Client).
type Hook interface {
	Ask(ctx context.Context, req authhook.Request) (authhook.Answer, error)
}

// Results of Observer.HookAnswered.
const (
	HookOK          = "ok"
	HookRefused     = "refused"
	HookUnavailable = "unavailable"
)

// hookResult names the outcome of askHook's err.
func hookResult(err error) string {
	var e *pop3.Error
	switch {
	case err == nil:
		return HookOK
	case errors.As(err, &e) && e.Code == pop3.CodeAuth:
		return HookRefused
	}
	return HookUnavailable
}

// errMasterUnverified: a master user is configured but nothing checks the
// user's own credentials. Configuration validation refuses this; the
// proxy refuses it again rather than open any mailbox with any password.
var errMasterUnverified = errors.New("proxy: upstream master user without a hook or upstream verification of the user's own credentials")

// askHook asks the hook about cred and applies its answer to upCred (the
// login to make upstream). It returns the server the hook chose ("" for
// the route's own).
func askHook(ctx context.Context, hook Hook, ci *pop3.ConnInfo, cred *pop3.Credentials, upCred *imapupstream.Credentials) (server string, err error) {
	req := authhook.Request{
		Method:  "plain",
		User:    upCred.Username, // without a device: the service knows users
		Pass:    cred.Password,
		Attempt: ci.LoginAttempt,
		TLS:     ci.TLS != nil,
	}
	bearer := upCred.Token != ""
	if bearer {
		req.Method, req.Pass = strings.ToLower(cred.Mechanism), cred.Token
	}
	if a, ok := ci.RemoteAddr.(*net.TCPAddr); ok {
		req.Client = a.IP
	}
	ans, err := hook.Ask(ctx, req)
	var refused *authhook.Refusal
	switch {
	case errors.As(err, &refused):
		// As nginx does: with Auth-Wait the client may try again after
		// the wait; without it the connection ends.
		return "", &pop3.Error{Code: pop3.CodeAuth, Message: refusalText(refused.Text),
			Wait: refused.Wait, Close: refused.Wait == 0, Err: err}
	case err != nil:
		return "", &pop3.Error{Code: pop3.CodeSysTemp, Message: "authentication service unavailable, try again later", Err: err}
	}
	upCred.Username = ans.User
	if bearer {
		upCred.Token = ans.Pass
	} else {
		upCred.Password = ans.Pass
	}
	return ans.Server, nil
}

// refusalText is the hook's refusal as the client sees it: printable
// ASCII, short, never empty.
func refusalText(s string) string {
	const max = 200
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= max {
			break
		}
		if r < ' ' || r > '~' {
			r = ' '
		}
		b.WriteRune(r)
	}
	if t := strings.TrimSpace(b.String()); t != "" {
		return t
	}
	return "authentication failed"
}

// withServer returns o for a session on server, the host:port a hook
// chose: o's dialer pointed there, and the server naming the maildrop in
// uidmap, as a route's upstream does.
func (o *Options) withServer(server string) *Options {
	so := *o
	so.Dialer = o.Dialer.WithAddress(server)
	so.UpstreamID = server
	return &so
}
