package proxy

import (
	"errors"
	"fmt"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/uidmap"
)

// clientError turns an upstream or store failure into what the POP3 client
// is told. The cause stays in Err for the log; the client sees only the
// response code and a fixed text, never upstream wording that might carry
// account details.
func clientError(err error) error {
	var said *pop3.Error
	if err == nil || errors.As(err, &said) {
		return err // nil, or what the client is to be told already
	}
	e := &pop3.Error{Err: err}
	switch {
	case errors.Is(err, imapupstream.ErrAuthFailed):
		// pop3.ErrAuthFailed gets the failure delay and counts as a bad
		// login; the upstream's own words stay in the log.
		return fmt.Errorf("%w: %w", pop3.ErrAuthFailed, err)
	case errors.Is(err, imapupstream.ErrInUse), errors.Is(err, uidmap.ErrLocked):
		// Never shown as a wrong password: clients would then ask for a new one.
		e.Code, e.Message = pop3.CodeInUse, "maildrop is in use by another session"
	case errors.Is(err, imapupstream.ErrNoSuchMessage):
		return errors.Join(pop3.ErrNoSuchMessage, err)
	case errors.Is(err, imapupstream.ErrNoMailbox), errors.Is(err, imapupstream.ErrConfig):
		// Retrying will not help: the operator has to act.
		e.Code, e.Message = pop3.CodeSysPerm, "maildrop cannot be opened, contact your administrator"
	case errors.Is(err, imapupstream.ErrMailboxChanged):
		e.Code, e.Message, e.Close = pop3.CodeSysTemp, "mailbox changed upstream, please reconnect", true
	default:
		e.Code, e.Message = pop3.CodeSysTemp, "mail server temporarily unavailable, try again later"
	}
	return e
}

// sessionError is clientError for commands after login: once the upstream
// connection is gone nothing more can be served, so the client is told and
// the connection closed, which also frees the maildrop lock at once instead
// of when the client gives up.
func sessionError(err error) error {
	ce := clientError(err)
	var e *pop3.Error
	if errors.Is(err, imapupstream.ErrUnavailable) && errors.As(ce, &e) {
		e.Close = true
	}
	return ce
}
