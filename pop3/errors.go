package pop3

import (
	"errors"
	"time"
)

// Response codes of RFC 2449 and RFC 3206 that a backend may attach to an
// error.
const (
	CodeInUse      = "IN-USE"
	CodeLoginDelay = "LOGIN-DELAY"
	CodeSysTemp    = "SYS/TEMP"
	CodeSysPerm    = "SYS/PERM"
	CodeAuth       = "AUTH"
)

// Error is an error with the text and response code the client should see.
// Backends return it (or wrap it) to choose the -ERR line.
type Error struct {
	Code    string // response code without brackets, or ""
	Message string // human-readable text sent to the client
	// Close asks the server to end the connection after the -ERR line,
	// for failures after which the session cannot safely go on.
	Close bool
	// Wait, on a refused login ([AUTH]), is how long to hold the answer
	// back instead of Server.FailureDelay: an authentication service may
	// ask for its own delay.
	Wait time.Duration
	Err  error // the underlying cause, for logs; never sent to the client
}

func (e *Error) Error() string {
	s := e.Message
	if e.Code != "" {
		s = "[" + e.Code + "] " + s
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// ErrNoSuchMessage is returned by a Session for a message that no longer
// exists upstream (expunged by another client during the session). The
// client gets -ERR and the session goes on.
var ErrNoSuchMessage = &Error{Message: "message no longer exists"}

// asError returns the *Error in err's chain, or a [SYS/TEMP] one.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeSysTemp, Message: "temporary server failure", Err: err}
}

// ErrAuthFailed is what Backend.Login returns (or wraps) for wrong
// credentials: the client gets "-ERR [AUTH] authentication failed" after
// Server.FailureDelay. A Login error that is an *Error without a code is
// treated the same way (we announce AUTH-RESP-CODE); one that is no *Error
// at all is a [SYS/TEMP] failure, answered at once.
var ErrAuthFailed = &Error{Code: CodeAuth, Message: "authentication failed"}
