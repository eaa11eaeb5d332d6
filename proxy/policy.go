package proxy

import (
	"fmt"

	"github.com/popbridge/popbridge/imapupstream"
)

// Policy says what POP3 actions do upstream (DESIGN.md §3 policy.*).
type Policy struct {
	// OnDele is what happens in UPDATE to messages the client DELEted:
	// expunge, trash or keep.
	OnDele       imapupstream.DeleteMode
	TrashMailbox string
	// MarkSeen sets \Seen upstream on messages the client RETRieved in
	// full. TOP never does.
	MarkSeen bool
	// Exclusive allows one POP3 session per maildrop at a time.
	Exclusive bool
}

// ParseDeleteMode checks a policy.on_dele value.
func ParseDeleteMode(s string) (imapupstream.DeleteMode, error) {
	switch m := imapupstream.DeleteMode(s); m {
	case imapupstream.DeleteExpunge, imapupstream.DeleteTrash, imapupstream.DeleteKeep:
		return m, nil
	default:
		return "", fmt.Errorf("policy.on_dele %q: want expunge, trash or keep", s)
	}
}
