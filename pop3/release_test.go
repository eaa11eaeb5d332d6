package pop3

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// releasing is a Releaser over a memSession that records the order of the
// calls, and whether the client had its answer to QUIT when Close came.
type releasing struct {
	Session
	out    *bytes.Buffer // what the client got so far
	events []string
}

func (r *releasing) Update(ctx context.Context, deleted []int) error {
	r.events = append(r.events, "update")
	return r.Session.Update(ctx, deleted)
}

func (r *releasing) Release() { r.events = append(r.events, "release") }

func (r *releasing) Close() error {
	answered := strings.Contains(r.out.String(), "+OK bye") || strings.Contains(r.out.String(), "-ERR")
	r.events = append(r.events, "close, answered "+map[bool]string{true: "yes", false: "no"}[answered])
	return r.Session.Close()
}

// TestQuitReleaser: a Releaser's QUIT runs Update, Release, the +OK, and
// Close after it; a failed Update gets no Release, and its -ERR comes
// after Close as without Releaser.
func TestQuitReleaser(t *testing.T) {
	for _, tc := range []struct {
		name      string
		updateErr error
		want      []string
		answer    string
	}{
		{"update ok", nil, []string{"update", "release", "close, answered yes"}, "+OK bye\r\n"},
		{"update failed", &Error{Code: CodeSysTemp, Message: "upstream gone"}, []string{"update", "close, answered no"}, "-ERR [SYS/TEMP] upstream gone\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newMemBackend(testMessages...)
			b.setup = func(s *memSession) { s.updateErr = tc.updateErr }
			pc := &pipeConn{in: bytes.NewReader([]byte("USER alice\r\nPASS secret\r\nDELE 1\r\nQUIT\r\n"))}
			var r *releasing
			srv := &Server{Backend: wrapBackend{b, func(s Session) Session {
				r = &releasing{Session: s, out: &pc.out}
				return r
			}}, Logger: zap.NewNop()}
			c := srv.trackConn(pc, ListenerConfig{})
			c.serve()
			if err := srv.Close(); err != nil {
				t.Fatal(err)
			}
			if r == nil || !slices.Equal(r.events, tc.want) {
				t.Fatalf("calls %q, want %q", r.events, tc.want)
			}
			if !strings.HasSuffix(pc.out.String(), tc.answer) {
				t.Fatalf("client got %q, want it to end in %q", pc.out.String(), tc.answer)
			}
		})
	}
}

// wrapBackend wraps the sessions of a Backend.
type wrapBackend struct {
	Backend
	wrap func(Session) Session
}

func (w wrapBackend) Login(ctx context.Context, ci *ConnInfo, cred *Credentials) (Session, error) {
	s, err := w.Backend.Login(ctx, ci, cred)
	if err != nil {
		return nil, err
	}
	return w.wrap(s), nil
}
