package uidmap

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/popbridge/popbridge/pop3"
)

// Importing UIDLs from a previous POP3 server (popbridge import-uidl).
//
// A site that moves its POP3 users from another server to popbridge keeps
// their clients from downloading everything again only if every message
// keeps the UIDL the old server gave it. MatchImport pairs the old server's
// listing with the upstream IMAP messages, in passes from the surest
// evidence to the weakest (as Dovecot's pop3-migration plugin does):
//
//  1. MatchUID — the listing comes from the same mailbox (a dovecot-uidlist
//     with the upstream's UIDVALIDITY): its IMAP UIDs are the answer, and
//     no other pass runs (what is left over is gone, or new).
//  2. MatchSizeOrder — both lists in their own order (POP3 message numbers,
//     IMAP UIDs) with the same sizes, position by position, from the start
//     until the first position where they differ. A run of neighbours of
//     equal size could hide a shift, so those are left to the header passes.
//  3. MatchHeaderSize — a hash of the normalised header (volatile fields
//     such as Received dropped, white space collapsed: the normalisation
//     fingerprints use) and the size.
//  4. MatchHeader — the header hash alone, for servers that count sizes
//     differently (LF line ends, headers of their own added to the message).
//
// When several messages share a key on both sides (duplicates), they are
// paired in order: old messages by POP3 message number, IMAP messages by
// UID. The outcome depends only on the inputs.
//
// Importer writes the result: one Store.Apply with a Record, carrying its
// Fingerprint, per matched message, so that a later UIDVALIDITY change keeps
// the imported UIDLs too. Unmatched IMAP messages are not written: Resolve
// names them at the next login, as it names any new message.

// MatchPass says what paired an old message with an IMAP message.
type MatchPass int

// The passes, strongest first.
const (
	MatchUID        MatchPass = iota + 1 // same mailbox, same IMAP UID
	MatchSizeOrder                       // the same sizes in the same order
	MatchHeaderSize                      // header hash and size
	MatchHeader                          // header hash alone
)

func (p MatchPass) String() string {
	switch p {
	case MatchUID:
		return "uid"
	case MatchSizeOrder:
		return "size-order"
	case MatchHeaderSize:
		return "header+size"
	case MatchHeader:
		return "header"
	}
	return "pass" + strconv.Itoa(int(p))
}

// OldMessage is one message as the previous POP3 server listed it.
type OldMessage struct {
	UIDL string
	Size int64  // octets as the old server counted them (LIST); -1 when unknown
	UID  uint32 // its IMAP UID in the old mailbox (dovecot-uidlist); 0 when unknown
}

// ImportSource is the old server's listing, in its order (POP3 message
// numbers, or the order of a dovecot-uidlist).
type ImportSource struct {
	Messages []OldMessage
	// UIDValidity is the UIDVALIDITY that Messages' UIDs belong to; 0 when
	// they carry none.
	UIDValidity uint32
	// HeaderHashes returns HeaderHash of the header of the old messages at
	// the given indexes into Messages (e.g. from TOP n 0); an index left out
	// has no header. nil when headers cannot be had.
	HeaderHashes func(ctx context.Context, idx []int) (map[int]string, error)
}

// ImportTarget is the upstream mailbox the UIDLs are imported for.
type ImportTarget struct {
	UIDValidity uint32
	Messages    []Message // the snapshot
	// HeaderHashes returns HeaderHash of the whole header of the given
	// messages; a UID left out has no header. nil when headers cannot be had.
	HeaderHashes func(ctx context.Context, uids []uint32) (map[uint32]string, error)
	// Identify fetches identities (as Resolve's Identifier) for the
	// fingerprints of the matched messages; nil stores sizes only.
	Identify Identifier
}

// HeaderHash is the hash of a message header (up to the blank line that
// ends it) after the normalisation fingerprints use: volatile fields that
// servers add or rewrite are dropped, field names lower-cased, white space
// collapsed. A header with no fields hashes to "".
func HeaderHash(header []byte) string {
	n := normaliseHeader(header)
	if len(n) == 0 {
		return ""
	}
	return shortHash(n)
}

// ImportMatch pairs one old message with one IMAP message.
type ImportMatch struct {
	Old  int    // index into ImportSource.Messages
	UID  uint32 // upstream UID
	UIDL string
	Pass MatchPass
}

// SkippedUIDL is an old message whose UIDL cannot be imported.
type SkippedUIDL struct {
	Old    int // index into ImportSource.Messages
	Reason string
}

// ImportResult is what MatchImport found and what Importer did with it.
type ImportResult struct {
	UIDValidity  uint32
	Matches      []ImportMatch // sorted by UID
	UnmatchedOld []int         // old messages with no IMAP match (indexes into ImportSource.Messages), ascending
	UnmatchedNew []uint32      // IMAP messages with no old UIDL, ascending
	Skipped      []SkippedUIDL // old messages with an invalid or duplicate UIDL (not in UnmatchedOld)
	ByPass       map[MatchPass]int

	// Set by Importer.Run.
	Existing int  // records stored for the maildrop before the import
	Replaced bool // they were replaced (Force)
	Written  bool // the store was changed (false with DryRun)
}

// MatchImport pairs the old server's messages with the upstream's. It only
// reads: headers are asked for (from both sides at once) only for the
// messages that the UID and size passes left unmatched.
func MatchImport(ctx context.Context, src ImportSource, dst ImportTarget) (*ImportResult, error) {
	res := &ImportResult{UIDValidity: dst.UIDValidity, ByPass: make(map[MatchPass]int)}

	// Old messages whose UIDL could be served: valid, and first of its kind.
	firstOf := make(map[string]int, len(src.Messages))
	old := make([]int, 0, len(src.Messages)) // candidate indexes, in order
	for i, m := range src.Messages {
		if !pop3.ValidUIDL(m.UIDL) {
			res.Skipped = append(res.Skipped, SkippedUIDL{Old: i, Reason: fmt.Sprintf("UIDL %q is not 1-70 characters of 0x21-0x7E", m.UIDL)})
			continue
		}
		if j, dup := firstOf[m.UIDL]; dup {
			res.Skipped = append(res.Skipped, SkippedUIDL{Old: i, Reason: fmt.Sprintf("UIDL %q is already message %d's", m.UIDL, j+1)})
			continue
		}
		firstOf[m.UIDL] = i
		old = append(old, i)
	}

	cur := slices.Clone(dst.Messages)
	slices.SortFunc(cur, func(a, b Message) int { return cmp.Compare(a.UID, b.UID) })
	cur = slices.CompactFunc(cur, func(a, b Message) bool { return a.UID == b.UID })

	oldDone := make(map[int]bool, len(old))
	curDone := make(map[uint32]bool, len(cur))
	match := func(i int, uid uint32, pass MatchPass) {
		oldDone[i], curDone[uid] = true, true
		res.Matches = append(res.Matches, ImportMatch{Old: i, UID: uid, UIDL: src.Messages[i].UIDL, Pass: pass})
		res.ByPass[pass]++
	}
	restOld := func() []int {
		var r []int
		for _, i := range old {
			if !oldDone[i] {
				r = append(r, i)
			}
		}
		return r
	}
	restCur := func() []Message {
		var r []Message
		for _, m := range cur {
			if !curDone[m.UID] {
				r = append(r, m)
			}
		}
		return r
	}

	if src.UIDValidity != 0 && src.UIDValidity == dst.UIDValidity {
		// The same mailbox: UIDs say it all. A size that disagrees means
		// the UID names another message after all; leave it alone.
		index := make(map[uint32]int, len(cur))
		for j, m := range cur {
			index[m.UID] = j
		}
		for _, i := range old {
			o := src.Messages[i]
			if j, ok := index[o.UID]; ok && o.UID != 0 && (o.Size < 0 || o.Size == cur[j].Size) {
				match(i, o.UID, MatchUID)
			}
		}
	} else {
		matchSizeOrder(src, old, cur, match)
		if err := matchHeaders(ctx, src, dst, restOld(), restCur(), match); err != nil {
			return nil, err
		}
	}

	res.UnmatchedOld = restOld()
	for _, m := range restCur() {
		res.UnmatchedNew = append(res.UnmatchedNew, m.UID)
	}
	slices.SortFunc(res.Matches, func(a, b ImportMatch) int { return cmp.Compare(a.UID, b.UID) })
	return res, nil
}

// matchSizeOrder walks both lists in order while their sizes agree,
// position by position. A position whose size equals a neighbour's (on the
// old side) is skipped: two equal sizes in a row could hide a message
// missing on one side and another added on the other.
func matchSizeOrder(src ImportSource, old []int, cur []Message, match func(int, uint32, MatchPass)) {
	n := min(len(old), len(cur))
	size := func(k int) int64 { return src.Messages[old[k]].Size }
	for k := 0; k < n; k++ {
		s := size(k)
		if s < 0 || s != cur[k].Size {
			return
		}
		if (k > 0 && size(k-1) == s) || (k+1 < len(old) && size(k+1) == s) {
			continue
		}
		match(old[k], cur[k].UID, MatchSizeOrder)
	}
}

// matchHeaders runs the two header passes over what is left.
func matchHeaders(ctx context.Context, src ImportSource, dst ImportTarget, old []int, cur []Message,
	match func(int, uint32, MatchPass)) error {
	if len(old) == 0 || len(cur) == 0 || src.HeaderHashes == nil || dst.HeaderHashes == nil {
		return nil
	}
	oldHash, err := src.HeaderHashes(ctx, old)
	if err != nil {
		return fmt.Errorf("uidmap: headers of %d old messages: %w", len(old), err)
	}
	uids := make([]uint32, len(cur))
	for j, m := range cur {
		uids[j] = m.UID
	}
	curHash, err := dst.HeaderHashes(ctx, uids)
	if err != nil {
		return fmt.Errorf("uidmap: headers of %d upstream messages: %w", len(cur), err)
	}
	passes := []struct {
		pass  MatchPass
		keyOf func(hash string, size int64) string
	}{
		{MatchHeaderSize, func(h string, size int64) string {
			if size < 0 {
				return ""
			}
			return h + "/" + strconv.FormatInt(size, 10)
		}},
		{MatchHeader, func(h string, _ int64) string { return h }},
	}
	oldTaken := make(map[int]bool, len(old))
	curTaken := make(map[uint32]bool, len(cur))
	for _, p := range passes {
		candidates := make(map[string][]int) // key → old indexes, in order
		for _, i := range old {
			if h := oldHash[i]; h != "" && !oldTaken[i] {
				if k := p.keyOf(h, src.Messages[i].Size); k != "" {
					candidates[k] = append(candidates[k], i)
				}
			}
		}
		for _, m := range cur { // in UID order
			h := curHash[m.UID]
			if h == "" || curTaken[m.UID] {
				continue
			}
			k := p.keyOf(h, m.Size)
			list := candidates[k]
			if k == "" || len(list) == 0 {
				continue
			}
			candidates[k] = list[1:]
			oldTaken[list[0]], curTaken[m.UID] = true, true
			match(list[0], m.UID, p.pass)
		}
	}
	return nil
}

// ErrStateExists is returned by Importer when the maildrop already has
// stored UIDLs and Force is not set: clients may have seen them, and an
// import would change them.
var ErrStateExists = errors.New("uidmap: the maildrop already has stored UIDLs")

// Importer writes the UIDLs MatchImport found into a store.
type Importer struct {
	Store Store
	Key   Key
	// Force replaces a maildrop's existing state. Hidden marks (on_dele:
	// hide) of messages still present under the same UIDVALIDITY are kept.
	Force bool
	// DryRun matches and reports, and writes nothing.
	DryRun bool
}

// Check returns how many records are stored for the maildrop, with an error
// wrapping ErrStateExists if there are some and Force is not set. Run checks
// again; calling Check first only fails faster.
func (im *Importer) Check(ctx context.Context) (existing int, err error) {
	drop, err := im.Store.Load(ctx, im.Key)
	if err != nil {
		return 0, fmt.Errorf("uidmap: load %s: %w", im.Key.User, err)
	}
	return im.check(drop)
}

func (im *Importer) check(drop *Maildrop) (int, error) {
	n := len(drop.Records)
	if n > 0 && !im.Force {
		return n, fmt.Errorf("%w: %d UIDLs are stored for %s (UIDVALIDITY %d); importing would change UIDLs that clients may have seen",
			ErrStateExists, n, im.Key.User, drop.UIDValidity)
	}
	return n, nil
}

// Run matches src to dst and, unless DryRun, stores the matched UIDLs in
// one Store.Apply: a Change with dst's UIDVALIDITY and a Record, with its
// fingerprint, per matched message. With Force the same Apply removes every
// other stored record, so the old state is replaced at once or not at all.
// Nothing is written when nothing matched and nothing is to be replaced.
func (im *Importer) Run(ctx context.Context, src ImportSource, dst ImportTarget) (*ImportResult, error) {
	drop, err := im.Store.Load(ctx, im.Key)
	if err != nil {
		return nil, fmt.Errorf("uidmap: load %s: %w", im.Key.User, err)
	}
	existing, err := im.check(drop)
	if err != nil {
		return nil, err
	}
	res, err := MatchImport(ctx, src, dst)
	if err != nil {
		return nil, err
	}
	res.Existing = existing
	res.Replaced = existing > 0
	if im.DryRun || (len(res.Matches) == 0 && existing == 0) {
		return res, nil
	}

	ch := &Change{Expect: drop.UIDValidity, UIDValidity: dst.UIDValidity}
	if len(res.Matches) > 0 {
		ch.Put, err = importRecords(ctx, res.Matches, dst)
		if err != nil {
			return nil, err
		}
	}
	if drop.UIDValidity == dst.UIDValidity {
		// Replace the records of the same UIDVALIDITY (another one is
		// dropped by Apply itself). Hidden marks stay: the hidden messages
		// are still deleted as far as POP3 clients are concerned.
		put := make(map[uint32]bool, len(ch.Put))
		uidls := make(map[string]bool, len(ch.Put))
		for i, r := range ch.Put {
			put[r.UID], uidls[r.UIDL] = true, true
			if old, ok := drop.Find(r.UID); ok {
				ch.Put[i].Hidden = old.Hidden
			}
		}
		present := make(map[uint32]bool, len(dst.Messages))
		for _, m := range dst.Messages {
			present[m.UID] = true
		}
		for _, r := range drop.Records {
			uid := r.UID
			if put[uid] {
				continue
			}
			if r.Hidden && present[uid] && !uidls[r.UIDL] {
				continue // unmatched but hidden: keep the record and its mark
			}
			ch.Delete = append(ch.Delete, uid)
		}
	}
	if err := im.Store.Apply(ctx, im.Key, ch); err != nil {
		return nil, fmt.Errorf("uidmap: store %d imported UIDLs for %s: %w", len(ch.Put), im.Key.User, err)
	}
	res.Written = true
	return res, nil
}

// importRecords builds the records of the matched messages, fingerprints
// included.
func importRecords(ctx context.Context, matches []ImportMatch, dst ImportTarget) ([]Record, error) {
	sizes := make(map[uint32]int64, len(dst.Messages))
	for _, m := range dst.Messages {
		sizes[m.UID] = m.Size
	}
	ids := make(map[uint32]*Identity, len(matches))
	if dst.Identify != nil {
		uids := make([]uint32, len(matches))
		for i, m := range matches {
			uids[i] = m.UID
		}
		got, err := dst.Identify(ctx, uids)
		if err != nil {
			return nil, fmt.Errorf("uidmap: identify %d messages: %w", len(uids), err)
		}
		for i := range got {
			ids[got[i].UID] = &got[i]
		}
	}
	recs := make([]Record, len(matches))
	for i, m := range matches {
		recs[i] = Record{UID: m.UID, UIDL: m.UIDL, FP: fingerprint(sizes[m.UID], ids[m.UID])}
	}
	slices.SortFunc(recs, func(a, b Record) int { return cmp.Compare(a.UID, b.UID) })
	return recs, nil
}
