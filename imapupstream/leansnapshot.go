package imapupstream

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// errLeanFallback: the lean snapshot met a FETCH answer of another shape
// (e.g. the FLAGS of a concurrent change, which a server may send
// unsolicited); the snapshot is taken again the general way.
var errLeanFallback = errors.New("imapupstream: a FETCH answer the lean path does not read")

// leanSnapshot runs the snapshot's UID FETCH through c.lean: the
// "* n FETCH (UID u RFC822.SIZE s)" lines are parsed here, everything else
// goes to go-imap as usual.
func (c *Conn) leanSnapshot(g *guard, hint uint32) ([]MessageMeta, error) {
	metas := make([]MessageMeta, 0, hint)
	other := false
	cmd := &leanCmd{
		tag:      c.lean.nextTag(),
		progress: g.progress,
		line: func(line []byte) bool {
			if uid, size, ok := parseSizeFetch(line); ok {
				metas = append(metas, MessageMeta{UID: uid, Size: size})
				return true
			}
			if isFetch(line) {
				other = true
			}
			return false
		},
	}
	c.lean.start(cmd)
	if _, err := c.lean.Conn.Write([]byte(cmd.tag + " UID FETCH 1:* (UID RFC822.SIZE)\r\n")); err != nil {
		c.lean.abandon(cmd)
		return nil, err
	}
	var err error
	select {
	case err = <-cmd.done:
	case <-c.client.Closed():
		c.lean.abandon(cmd)
		select {
		case err = <-cmd.done:
		default:
			err = fmt.Errorf("connection closed: %w", c.deadCause())
		}
	}
	switch {
	case errors.Is(err, errLeanNo):
		// go-imap will say exactly what the server refused, and why.
		return nil, fmt.Errorf("%w: %w", errLeanFallback, err)
	case err != nil:
		return nil, err
	case other:
		return nil, errLeanFallback
	}
	return metas, nil
}

// parseSizeFetch parses "* n FETCH (UID u RFC822.SIZE s)" CRLF, the items in
// either order; ok is false for any other line.
func parseSizeFetch(line []byte) (uid uint32, size int64, ok bool) {
	rest, ok := fetchItems(line)
	if !ok {
		return 0, 0, false
	}
	var gotUID, gotSize bool
	for range 2 {
		sp := bytes.IndexByte(rest, ' ')
		if sp <= 0 {
			return 0, 0, false
		}
		name := rest[:sp]
		rest = rest[sp+1:]
		end := bytes.IndexByte(rest, ' ')
		if end < 0 {
			end = len(rest)
		}
		n, err := strconv.ParseUint(string(rest[:end]), 10, 63)
		if err != nil {
			return 0, 0, false
		}
		switch {
		case bytes.EqualFold(name, []byte("UID")) && !gotUID && n > 0 && n <= 1<<32-1:
			uid, gotUID = uint32(n), true
		case bytes.EqualFold(name, []byte("RFC822.SIZE")) && !gotSize:
			size, gotSize = int64(n), true
		default:
			return 0, 0, false
		}
		rest = rest[end:]
		if len(rest) > 0 {
			rest = rest[1:]
		}
	}
	return uid, size, gotUID && gotSize && len(rest) == 0
}

// fetchItems returns what is between the parentheses of an untagged FETCH
// line, ok false if line is not one.
func fetchItems(line []byte) ([]byte, bool) {
	rest, ok := bytes.CutPrefix(line, []byte("* "))
	if !ok {
		return nil, false
	}
	sp := bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return nil, false
	}
	for _, b := range rest[:sp] {
		if b < '0' || b > '9' {
			return nil, false
		}
	}
	rest = rest[sp+1:]
	if len(rest) < 7 || !bytes.EqualFold(rest[:7], []byte("FETCH (")) {
		return nil, false
	}
	rest, ok = bytes.CutSuffix(rest[7:], []byte(")\r\n"))
	return rest, ok
}

// isFetch reports whether line is an untagged FETCH answer of any shape.
func isFetch(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, []byte("* "))
	if !ok {
		return false
	}
	sp := bytes.IndexByte(rest, ' ')
	return sp > 0 && len(rest) > sp+5 && bytes.EqualFold(rest[sp+1:sp+6], []byte("FETCH"))
}
