package pop3

import (
	"errors"
	"io"
	"testing"
)

// allThenFail returns the whole message and an error in one Read, as an
// upstream whose FETCH delivered a short literal and then ended in BYE does.
type allThenFail struct {
	data []byte
	err  error
	done bool
}

func (r *allThenFail) Read(p []byte) (int, error) {
	if r.done {
		return 0, r.err
	}
	r.done = true
	return copy(p, r.data), r.err
}

// TestRetrFirstReadFailsWithData: a reader whose first Read returns octets
// together with an error has failed before anything went to the client:
// RETR answers -ERR (closing the connection when the error asks for it)
// instead of "+OK", the octets and no terminating dot.
func TestRetrFirstReadFailsWithData(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		want  string
		close bool
	}{
		{"plain error", errors.New("fetch ended badly"), "-ERR [SYS/TEMP] temporary server failure", false},
		{"error that closes", &Error{Code: CodeSysTemp, Message: "upstream gone", Close: true}, "-ERR [SYS/TEMP] upstream gone", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newMemBackend(testMessages...)
			b.setup = func(s *memSession) {
				s.bodies = map[int]io.Reader{1: &allThenFail{data: []byte(testMessages[0]), err: tc.err}}
			}
			e := startServer(t, b, nil)
			c := e.dial()
			c.login()
			if got := c.cmd("RETR 1"); got != tc.want {
				t.Fatalf("RETR 1: %q, want %q", got, tc.want)
			}
			if tc.close {
				if rest := c.expectEOF(); len(rest) != 0 {
					t.Fatalf("after the -ERR: %q", rest)
				}
				return
			}
			c.expectOK("NOOP")
			if got := b.session(t, 0).retrievedCalls(); len(got) != 0 {
				t.Fatalf("Retrieved called for a failed RETR: %v", got)
			}
		})
	}
}
