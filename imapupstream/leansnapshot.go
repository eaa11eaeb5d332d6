package imapupstream

import (
	"errors"
	"fmt"

	"github.com/popbridge/popbridge/imapupstream/internal/lean"
	"github.com/popbridge/popbridge/imapupstream/internal/watchdog"
)

// errLeanFallback: the lean snapshot met a FETCH answer of another shape
// (e.g. the FLAGS of a concurrent change, which a server may send
// unsolicited); the snapshot is taken again the general way.
var errLeanFallback = errors.New("imapupstream: a FETCH answer the lean path does not read")

// leanSnapshot runs the snapshot's UID FETCH through c.lean: the
// "* n FETCH (UID u RFC822.SIZE s)" lines are parsed there, everything else
// goes to go-imap as usual.
func (c *Conn) leanSnapshot(g *watchdog.Guard, hint uint32) ([]MessageMeta, error) {
	metas := make([]MessageMeta, 0, hint)
	other := false
	cmd := &lean.Command{
		Tag:      c.lean.NextTag(),
		Progress: g.Progress,
		Line: func(line []byte) bool {
			if uid, size, ok := lean.ParseSizeFetch(line); ok {
				metas = append(metas, MessageMeta{UID: uid, Size: size})
				return true
			}
			if lean.IsFetch(line) {
				other = true
			}
			return false
		},
	}
	if err := c.lean.Send(cmd, "UID FETCH 1:* (UID RFC822.SIZE)"); err != nil {
		return nil, err
	}
	var err error
	select {
	case err = <-cmd.Done():
	case <-c.client.Closed():
		c.lean.Abandon(cmd)
		select {
		case err = <-cmd.Done():
		default:
			err = fmt.Errorf("connection closed: %w", c.deadCause())
		}
	}
	switch {
	case errors.Is(err, lean.ErrNo):
		// go-imap will say exactly what the server refused, and why.
		return nil, fmt.Errorf("%w: %w", errLeanFallback, err)
	case err != nil:
		return nil, err
	case other:
		return nil, errLeanFallback
	}
	return metas, nil
}
