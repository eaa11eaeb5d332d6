package pop3

import (
	"context"
	"io"
)

// RetrieveAheader is an optional interface of a Session whose messages cost
// a round trip before their first octet, a proxy's for one: it learns which
// message the client will most likely RETR next, so that it can start
// fetching it while the current one streams. POP3 clients mostly RETR the
// messages one after another, so with such a guess each RETR finds its
// message already on the way.
type RetrieveAheader interface {
	// RetrieveAhead is called instead of Retrieve for RETR n. next is the
	// first message after n not marked deleted, or 0 if there is none. It
	// is only a guess: whatever the client sends next gets the usual calls,
	// and the session must not act on the guess in any way the client could
	// notice (no flags set, nothing deleted, nothing reported retrieved).
	RetrieveAhead(ctx context.Context, n, next int) (io.ReadCloser, error)
}

// retrieve opens message n for RETR, with the guess of the next RETR for a
// RetrieveAheader. The guess is made only while the client goes in order
// (n follows its previous RETR, or is the first message): a client that
// picks messages here and there would make the upstream send, and us
// throw away, a message after each one.
func (c *conn) retrieve(n int) (io.ReadCloser, error) {
	inOrder := c.drop.next(c.lastRetr) == n
	c.lastRetr = n
	if ra, ok := c.sess.(RetrieveAheader); ok {
		next := 0
		if inOrder {
			next = c.drop.next(n)
		}
		return ra.RetrieveAhead(c.ctx, n, next)
	}
	return c.sess.Retrieve(c.ctx, n)
}
