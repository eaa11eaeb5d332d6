package imapupstream

import (
	"bytes"
	"context"
	"io"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// MaxHeaderSize bounds what Headers keeps of one message's header; the rest
// is read and dropped.
const MaxHeaderSize = 1 << 20

// Headers fetches the whole header of each of msgs,
// UID FETCH uids (UID RFC822.SIZE BODY.PEEK[HEADER]) — one command per UID set — and
// hands each to fn as it streams in, so that a big mailbox's headers are
// never all held at once. header is only valid during the call and holds at
// most MaxHeaderSize octets. Nothing is marked \Seen. Messages that no
// longer exist are left out, and so are answers whose RFC822.SIZE is not the
// listed one (a stand-in, see Identify). The command timeout applies to
// stalls, not to the whole listing.
func (c *Conn) Headers(ctx context.Context, msgs []MessageMeta, fn func(uid uint32, header []byte)) error {
	const op = "UID FETCH (UID RFC822.SIZE BODY.PEEK[HEADER])"
	if err := c.begin(op); err != nil {
		return err
	}
	listed, sorted := listing(msgs)
	if len(sorted) == 0 {
		return nil
	}
	g := c.guard(ctx, c.cfg.CommandTimeout)
	defer g.Stop()
	section := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}
	var buf bytes.Buffer
	for _, set := range uidSets(sorted) {
		g.Progress()
		cmd := c.client.Fetch(set, &imap.FetchOptions{UID: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{section}})
		for {
			msg := cmd.Next()
			if msg == nil {
				break
			}
			g.Progress()
			var uid uint32
			size := int64(-1)
			got := false
			buf.Reset()
			for {
				item := msg.Next()
				if item == nil {
					break
				}
				switch it := item.(type) {
				case imapclient.FetchItemDataUID:
					uid = uint32(it.UID)
				case imapclient.FetchItemDataRFC822Size:
					size = it.Size
				case imapclient.FetchItemDataBodySection:
					if it.Literal == nil {
						continue
					}
					got = true
					// The items may come in any order: keep the header
					// until the message's UID is known too.
					if _, err := io.Copy(&buf, io.LimitReader(it.Literal, MaxHeaderSize)); err != nil {
						cmd.Close()
						return c.fail(op, err)
					}
					// go-imap drains what is left of the literal.
				}
			}
			if got && listed.matches(uid, size) {
				fn(uid, buf.Bytes())
			}
		}
		if err := cmd.Close(); err != nil {
			return c.fail(op, err)
		}
	}
	return nil
}
