package imapupstream

import (
	"bufio"
	"bytes"
	"context"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Ident is what can recognise a message again after the mailbox's
// UIDVALIDITY changed, when its UID means nothing any more.
type Ident struct {
	UID          uint32
	InternalDate time.Time
	MessageID    string // the Message-ID header, unfolded and trimmed; "" if none
	XUIDL        string // an X-UIDL header left by an earlier POP3 server; "" if none
	// Header is the whole header, fetched only for messages without a
	// Message-ID, for a header hash.
	Header []byte
	// GmailMsgID is Gmail's X-GM-MSGID, fetched only when asked for
	// (IdentifyOptions); 0 if not.
	GmailMsgID uint64
}

var identFields = []string{"MESSAGE-ID", "X-UIDL"}

// Identify fetches the identities of msgs: one round trip,
// UID FETCH uids (UID RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS
// (MESSAGE-ID X-UIDL)]), and a second one, BODY.PEEK[HEADER], only for the
// messages that have no Message-ID. Messages that no longer exist are left
// out of the result, and so is an answer whose RFC822.SIZE is not the
// listed one: a server may answer for a message another client expunged
// with a stand-in (see verify.go), whose identity is not the message's.
// (RFC 8474 EMAILID would be stronger, but go-imap cannot fetch it and
// Dovecot 2.3 does not offer OBJECTID.)
func (c *Conn) Identify(ctx context.Context, msgs []MessageMeta) ([]Ident, error) {
	return c.IdentifyWith(ctx, msgs, IdentifyOptions{})
}

// IdentifyWith is Identify, and what opts ask for besides (see
// IdentifyOptions), each in one more round trip.
func (c *Conn) IdentifyWith(ctx context.Context, msgs []MessageMeta, opts IdentifyOptions) (_ []Ident, err error) {
	if o := c.cfg.Observer; o != nil {
		defer observeCommand(o, "identify", time.Now(), &err)
	}
	const op = "UID FETCH (RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID X-UIDL)])"
	if err := c.begin(op); err != nil {
		return nil, err
	}
	listed, sorted := listing(msgs)
	if len(sorted) == 0 {
		return nil, nil
	}
	g := c.guard(ctx, c.cfg.CommandTimeout)
	defer g.Stop()
	fieldsSection := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: identFields, Peek: true}
	out := make([]Ident, 0, len(sorted))
	index := make(map[uint32]int, len(sorted))
	var noID []uint32
	for _, set := range uidSets(sorted) {
		g.Progress()
		msgs, err := c.client.Fetch(set, &imap.FetchOptions{
			UID: true, RFC822Size: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{fieldsSection},
		}).Collect()
		if err != nil {
			return nil, c.fail(op, err)
		}
		for _, m := range msgs {
			if !listed.matches(uint32(m.UID), m.RFC822Size) {
				continue
			}
			hdr := parseHeaderFields(m.FindBodySection(fieldsSection))
			id := Ident{
				UID:          uint32(m.UID),
				InternalDate: m.InternalDate,
				MessageID:    strings.TrimSpace(hdr.Get("Message-Id")),
				XUIDL:        strings.TrimSpace(hdr.Get("X-Uidl")),
			}
			index[id.UID] = len(out)
			out = append(out, id)
			if id.MessageID == "" {
				noID = append(noID, id.UID)
			}
		}
	}
	headerSection := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}
	for _, set := range uidSets(noID) {
		g.Progress()
		msgs, err := c.client.Fetch(set, &imap.FetchOptions{
			UID: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{headerSection},
		}).Collect()
		if err != nil {
			return nil, c.fail("UID FETCH (RFC822.SIZE BODY.PEEK[HEADER])", err)
		}
		for _, m := range msgs {
			if i, ok := index[uint32(m.UID)]; ok && listed.matches(uint32(m.UID), m.RFC822Size) {
				out[i].Header = m.FindBodySection(headerSection)
			}
		}
	}
	if opts.GmailMsgID && c.caps.Has(CapGmail) && len(out) > 0 {
		if err := c.gmailMsgIDs(g, out, index, listed); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// sizes maps the UIDs of a listing to their RFC822.SIZE.
type sizes map[uint32]int64

// listing returns msgs as sizes, and their UIDs sorted (no duplicates, no 0).
func listing(msgs []MessageMeta) (sizes, []uint32) {
	listed := make(sizes, len(msgs))
	uids := make([]uint32, 0, len(msgs))
	for _, m := range msgs {
		listed[m.UID] = m.Size
		uids = append(uids, m.UID)
	}
	return listed, sortUIDs(uids)
}

// matches reports whether an answer for uid with RFC822.SIZE size is the
// listed message.
func (l sizes) matches(uid uint32, size int64) bool {
	want, ok := l[uid]
	return ok && uid != 0 && size == want
}

// parseHeaderFields reads a header block; a malformed one yields what could
// be read, since an identity is a best effort, not a reason to fail.
func parseHeaderFields(b []byte) textproto.MIMEHeader {
	if !bytes.HasSuffix(b, []byte("\r\n\r\n")) && !bytes.HasSuffix(b, []byte("\n\n")) {
		b = append(append([]byte(nil), b...), "\r\n\r\n"...)
	}
	h, _ := textproto.NewReader(bufio.NewReader(bytes.NewReader(b))).ReadMIMEHeader()
	return h
}

// SearchKeyword returns the UIDs of the messages carrying keyword:
// UID SEARCH KEYWORD keyword.
func (c *Conn) SearchKeyword(ctx context.Context, keyword string) (_ []uint32, err error) {
	if o := c.cfg.Observer; o != nil {
		defer observeCommand(o, "search_keyword", time.Now(), &err)
	}
	op := "UID SEARCH KEYWORD " + keyword
	if err := c.begin(op); err != nil {
		return nil, err
	}
	g := c.guard(ctx, c.cfg.CommandTimeout)
	defer g.Stop()
	data, err := c.client.UIDSearch(&imap.SearchCriteria{Flag: []imap.Flag{imap.Flag(keyword)}}, nil).Wait()
	if err != nil {
		return nil, c.fail(op, err)
	}
	var uids []uint32
	for _, uid := range data.AllUIDs() {
		uids = append(uids, uint32(uid))
	}
	return uids, nil
}

// AddKeyword sets keyword on uids: UID STORE uids +FLAGS.SILENT (keyword).
// It does nothing when the mailbox cannot store it (PERMANENTFLAGS).
func (c *Conn) AddKeyword(ctx context.Context, uids []uint32, keyword string) (stored bool, err error) {
	if o := c.cfg.Observer; o != nil {
		defer observeCommand(o, "add_keyword", time.Now(), &err)
	}
	op := "UID STORE +FLAGS.SILENT (" + keyword + ")"
	if err := c.begin(op); err != nil {
		return false, err
	}
	if c.mbox == nil || !c.mbox.CanStoreFlag(keyword) {
		return false, nil
	}
	sorted := sortUIDs(uids)
	if len(sorted) == 0 {
		return true, nil
	}
	g := c.guard(ctx, c.cfg.CommandTimeout)
	defer g.Stop()
	return true, c.storeFlags(g, op, sorted, imap.StoreFlagsAdd, imap.Flag(keyword))
}
