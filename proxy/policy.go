package proxy

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/popbridge/popbridge/imapupstream"
)

// OnDele is what UPDATE does to the messages a client DELEted
// (policy.on_dele).
type OnDele string

const (
	// OnDeleExpunge removes them upstream (UID STORE \Deleted, UID EXPUNGE).
	OnDeleExpunge OnDele = "expunge"
	// OnDeleTrash moves them to Policy.TrashMailbox.
	OnDeleTrash OnDele = "trash"
	// OnDeleHide leaves them in IMAP untouched and hides them from every
	// later POP3 session (leave-on-server): the mark lives in uidmap, and
	// as the keyword HiddenKeyword where the mailbox can store it.
	OnDeleHide OnDele = "hide"
	// OnDeleKeep accepts DELE and changes nothing: the message stays.
	OnDeleKeep OnDele = "keep"
)

// HiddenKeyword marks hidden messages upstream too, so that the marks
// survive the loss of the state store (Dovecot's pop3_deleted_flag does the
// same with a keyword of the operator's choice).
const HiddenKeyword = "$POP3Deleted"

// ParseOnDele checks a policy.on_dele value.
func ParseOnDele(s string) (OnDele, error) {
	switch d := OnDele(s); d {
	case OnDeleExpunge, OnDeleTrash, OnDeleHide, OnDeleKeep:
		return d, nil
	default:
		return "", fmt.Errorf("policy.on_dele %q: want expunge, trash, hide or keep", s)
	}
}

// deleteUpstream does to the DELEted messages uids what p.OnDele says
// (expunge, trash or keep; hide is the session's own): on_dele keep calls
// nothing upstream.
func (p Policy) deleteUpstream(ctx context.Context, conn *imapupstream.Conn, log *zap.Logger, uids []uint32) error {
	switch p.OnDele {
	case OnDeleTrash:
		return conn.Move(ctx, uids, p.TrashMailbox)
	case OnDeleKeep:
		log.Debug("upstream messages deleted", zap.String("method", "keep"), zap.Int("count", len(uids)))
		return nil
	default:
		return conn.Expunge(ctx, uids)
	}
}

// Policy says what POP3 actions do upstream (the config keys policy.*).
type Policy struct {
	OnDele       OnDele
	TrashMailbox string
	// MarkSeen sets \Seen upstream on messages the client RETRieved in
	// full. TOP never does.
	MarkSeen bool
	// Exclusive allows one POP3 session per maildrop at a time.
	Exclusive bool
}
