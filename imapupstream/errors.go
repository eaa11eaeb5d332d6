package imapupstream

import (
	"errors"
	"fmt"

	"github.com/emersion/go-imap/v2"
)

// Errors returned (wrapped) by this package; compare with errors.Is. The
// server's own *imap.Error (status, response code, text) stays in the chain
// when there is one, for errors.As and for logs.
var (
	// ErrAuthFailed: the upstream refused the credentials (NO
	// [AUTHENTICATIONFAILED], a plain NO to LOGIN/AUTHENTICATE, or
	// [AUTHORIZATIONFAILED], [EXPIRED], [PRIVACYREQUIRED], [CONTACTADMIN]).
	ErrAuthFailed = errors.New("imapupstream: authentication failed")
	// ErrInUse: the upstream answered [INUSE] (the mailbox or account is busy).
	ErrInUse = errors.New("imapupstream: mailbox in use")
	// ErrUnavailable: the upstream cannot be used now: dial or TLS failure,
	// timeout, BYE, [UNAVAILABLE]/[SERVERBUG]/[LIMIT], connection closed.
	// The Conn is unusable afterwards (except for Close).
	ErrUnavailable = errors.New("imapupstream: upstream unavailable")
	// ErrNoSuchMessage: the message is gone (expunged by another client).
	// The Conn stays usable.
	ErrNoSuchMessage = errors.New("imapupstream: no such message")
	// ErrMailboxChanged: the mailbox's UIDVALIDITY changed during the session,
	// so the session's UIDs no longer name the same messages. (Dovecot instead
	// ends the session with BYE, which gives ErrUnavailable.)
	ErrMailboxChanged = errors.New("imapupstream: mailbox UIDVALIDITY changed")
	// ErrNoMailbox: the mailbox to select does not exist ([NONEXISTENT] or a
	// NO to SELECT).
	ErrNoMailbox = errors.New("imapupstream: no such mailbox")
	// ErrConfig: the Config or Credentials are not usable (see the text).
	ErrConfig = errors.New("imapupstream: invalid configuration")
)

// errConnClosed is the cause recorded when Close ends the connection.
var errConnClosed = errors.New("connection closed by Close")

// classify turns an error from go-imap into one of ours. op names the command
// for the message (never arguments: they may be secret). A *imap.Error is a
// command-level answer; anything else means the connection failed.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var imapErr *imap.Error
	if !errors.As(err, &imapErr) {
		if errors.Is(err, ErrUnavailable) {
			return err
		}
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
	}
	switch imapErr.Code {
	case imap.ResponseCodeInUse:
		return fmt.Errorf("%w: %s: %w", ErrInUse, op, err)
	case imap.ResponseCodeUnavailable, imap.ResponseCodeServerBug, imap.ResponseCodeLimit:
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
	case imap.ResponseCodeNonExistent:
		return fmt.Errorf("%w: %s: %w", ErrNoMailbox, op, err)
	case "EXPUNGEISSUED":
		return fmt.Errorf("%w: %s: %w", ErrNoSuchMessage, op, err)
	}
	if imapErr.Type == imap.StatusResponseTypeBye {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
	}
	return fmt.Errorf("imapupstream: %s: %w", op, err)
}

// classifyAuth maps the answer to LOGIN/AUTHENTICATE.
func classifyAuth(op string, err error) error {
	var imapErr *imap.Error
	if !errors.As(err, &imapErr) || imapErr.Type == imap.StatusResponseTypeBye {
		return classify(op, err)
	}
	switch imapErr.Code {
	case imap.ResponseCodeInUse, imap.ResponseCodeUnavailable, imap.ResponseCodeServerBug, imap.ResponseCodeLimit:
		return classify(op, err)
	}
	// NO (with [AUTHENTICATIONFAILED], [AUTHORIZATIONFAILED], [EXPIRED],
	// [PRIVACYREQUIRED], [CONTACTADMIN] or no code) and BAD: the credentials
	// or the way of logging in were refused. The server's text stays in the
	// chain for the logs.
	return fmt.Errorf("%w: %s: %w", ErrAuthFailed, op, err)
}

// isConnError reports whether err means the connection itself failed (as
// opposed to a NO/BAD answer to one command).
func isConnError(err error) bool {
	if err == nil {
		return false
	}
	var imapErr *imap.Error
	if errors.As(err, &imapErr) {
		return imapErr.Type == imap.StatusResponseTypeBye
	}
	return true
}
