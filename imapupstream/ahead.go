package imapupstream

import (
	"context"
	"io"
	"time"
)

// Sending the next messages' UID FETCH before they are asked for.
//
// A POP3 client RETRs one message after another, and each RETR costs a
// round trip to the upstream, and the server's start on the message, before
// its first octet: about as long as streaming a 100 KB message.
// FetchAhead sends the command for the messages expected next while the
// current one streams, so that their answers follow the current one on the
// wire and are arriving when they are asked for.
//
// The messages ahead go out as one command (UID FETCH u1,u2,...): the
// server streams them back to back, as it does for UID FETCH 1:*, where
// pipelined one-message commands each cost it a start of its own after the
// previous one is out (Dovecot's, measured by popbench: 107 µs a message
// batched, 172 µs one command each). The next batch goes out when the last
// message of the current one is asked for. The answers are read in order
// on the caller's goroutine (direct.go): a message asked for ahead and not
// wanted after all (the client sends DELE and QUIT, TOP, or RETRs another
// message) is read and thrown away by the next operation, which is why
// callers only ask ahead for batches small enough for that to be cheap.

// FetchAhead is Fetch(ctx, m) that also has the server send the messages
// next lists (ascending UIDs after m.UID; 0s are left out), right behind m,
// in one command: a Fetch (or FetchAhead) of next[0] then finds its answer
// under way, and of next[1] right behind it. If m itself was asked for
// ahead, with messages still to come behind it, nothing more is sent: the
// rest of that batch is ahead. The command sets no flag (BODY.PEEK); a
// message expunged before its command was answered gives ErrNoSuchMessage
// when it is fetched, as with Fetch.
//
// The reader of m ends with io.EOF once the whole literal has arrived and
// either the server has completed its command or the answer to a later
// command has started (the completion may come after it, Dovecot's for
// one): that completion is read later, and a refusal then, the message
// being whole and handed on already, is only logged.
func (c *Conn) FetchAhead(ctx context.Context, m MessageMeta, next ...uint32) (_ io.ReadCloser, err error) {
	if o := c.cfg.Observer; o != nil {
		defer observeCommand(o, "fetch", time.Now(), &err)
	}
	c.closeReader()
	c.settleSelect(ctx)
	if err := c.usable("UID FETCH"); err != nil {
		return nil, err
	}
	return c.fetchDirect(ctx, m, wantWhole(m), next)
}

// aheadUIDs is next without zeros and without what does not come after uid
// in ascending order.
func aheadUIDs(uid uint32, next []uint32) []uint32 {
	out := make([]uint32, 0, len(next))
	last := uid
	for _, u := range next {
		if u > last {
			out = append(out, u)
			last = u
		}
	}
	return out
}
