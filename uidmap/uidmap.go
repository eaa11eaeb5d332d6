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

// Map assigns and remembers UIDLs on top of a Store.
type Map struct {
	store  Store
	format Format
	// reuseXUIDL serves a new message's X-UIDL header as its UIDL, for
	// mail migrated from servers that wrote one.
	reuseXUIDL bool
}

// Options configure a Map.
type Options struct {
	Format     Format // nil: FormatDovecot
	ReuseXUIDL bool
}

// New returns a Map that keeps its state in store.
func New(store Store, opts Options) *Map {
	if opts.Format == nil {
		opts.Format = FormatDovecot{}
	}
	return &Map{store: store, format: opts.Format, reuseXUIDL: opts.ReuseXUIDL}
}

// Store returns the store behind m.
func (m *Map) Store() Store { return m.store }

// Message is an upstream message as the snapshot lists it.
type Message struct {
	UID  uint32
	Size int64
}

// Identifier fetches the identities of messages (Message-ID, INTERNALDATE,
// header…) from the upstream. Resolve calls it only for messages it has not
// seen before, or for all of them after a UIDVALIDITY change.
type Identifier func(ctx context.Context, uids []uint32) ([]Identity, error)

// View is the maildrop as POP3 sees it, in the order of the messages given
// to Resolve.
type View struct {
	UIDLs  []string
	Hidden []bool
	// Fresh is true when the store knew nothing of this maildrop.
	Fresh bool
	// Reset is true when the upstream's UIDVALIDITY changed since the last
	// session; Kept messages were recognised and keep their UIDLs.
	Reset    bool
	Known    int // served with their stored UIDL (UIDVALIDITY unchanged)
	Kept     int // recognised after a UIDVALIDITY change
	Assigned int // new UIDLs
	Pruned   int // records of messages gone upstream, forgotten
}

// Resolve returns the UIDL and hidden mark of every message in msgs (sorted
// by UID or not). Messages seen before keep the UIDL they were first served
// with; after a UIDVALIDITY change each message is recognised by its
// fingerprint and keeps its old UIDL and mark; only truly new messages get a
// new UIDL from the format. Everything new is stored in one batch before
// Resolve returns, so a UIDL is never served that a later session could not
// reproduce. UIDLs are unique within the maildrop.
func (m *Map) Resolve(ctx context.Context, key Key, uidValidity uint32, msgs []Message, identify Identifier) (*View, error) {
	return m.ResolveAdopting(ctx, key, uidValidity, msgs, identify, nil)
}

// ResolveAdopting is Resolve where a new message may also be one of
// donors, records of messages that left another maildrop (a folder served
// in the same POP3 maildrop, policy.folders): matched by fingerprint as
// after a UIDVALIDITY change, it keeps the donor's UIDL and hidden mark, so
// a message moved between folders is not downloaded again.
func (m *Map) ResolveAdopting(ctx context.Context, key Key, uidValidity uint32, msgs []Message, identify Identifier, donors []Record) (*View, error) {
	// A change computed from a state that another session (on this
	// instance or another one sharing the store) changed in between is
	// refused by the store: start again from the new state, where that
	// session's names are known and kept.
	for attempt := 1; ; attempt++ {
		v, err := m.resolve(ctx, key, uidValidity, msgs, identify, donors)
		if errors.Is(err, ErrStale) && attempt < 3 {
			continue
		}
		return v, err
	}
}

func byUID(r Record, uid uint32) int { return cmp.Compare(r.UID, uid) }

func (m *Map) resolve(ctx context.Context, key Key, uidValidity uint32, msgs []Message, identify Identifier, donors []Record) (*View, error) {
	drop, err := m.store.Load(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("uidmap: load %s: %w", key.User, err)
	}
	v := &View{UIDLs: make([]string, len(msgs)), Hidden: make([]bool, len(msgs)), Fresh: len(drop.Records) == 0}
	v.Reset = !v.Fresh && drop.UIDValidity != uidValidity
	ch := &Change{Expect: drop.UIDValidity, UIDValidity: uidValidity}

	var unknown []int // indexes into msgs still without a UIDL
	if v.Reset {
		for i := range msgs {
			unknown = append(unknown, i)
		}
	} else {
		// Snapshots come in UID order, like the records: walk both, and
		// search only where they part.
		recs := drop.Records
		matched := make([]bool, len(recs))
		j := 0
		for i, msg := range msgs {
			if j >= len(recs) || recs[j].UID != msg.UID {
				var ok bool
				if j, ok = slices.BinarySearchFunc(recs, msg.UID, byUID); !ok {
					unknown = append(unknown, i)
					continue
				}
			}
			v.UIDLs[i], v.Hidden[i] = recs[j].UIDL, recs[j].Hidden
			matched[j] = true
			v.Known++
			j++
		}
		for j, r := range recs {
			if !matched[j] {
				ch.Delete = append(ch.Delete, r.UID)
			}
		}
		v.Pruned = len(ch.Delete)
	}
	if len(unknown) == 0 {
		if len(ch.Delete) > 0 {
			if err := m.store.Apply(ctx, key, ch); err != nil {
				return nil, fmt.Errorf("uidmap: prune %s: %w", key.User, err)
			}
		}
		return v, nil
	}
	used := make(map[string]struct{}, len(msgs))
	for _, u := range v.UIDLs {
		if u != "" {
			used[u] = struct{}{}
		}
	}

	ids := make(map[uint32]*Identity, len(unknown))
	if identify != nil {
		uids := make([]uint32, len(unknown))
		for j, i := range unknown {
			uids[j] = msgs[i].UID
		}
		got, err := identify(ctx, uids)
		if err != nil {
			return nil, fmt.Errorf("uidmap: identify %d messages of %s: %w", len(uids), key.User, err)
		}
		for i := range got {
			ids[got[i].UID] = &got[i]
		}
	}
	fps := make(map[uint32]Fingerprint, len(unknown))
	for _, i := range unknown {
		fps[msgs[i].UID] = fingerprint(msgs[i].Size, ids[msgs[i].UID])
	}

	if v.Reset {
		unknown = m.reidentify(drop, msgs, unknown, fps, v, used, ch)
	}
	if len(donors) > 0 && len(unknown) > 0 {
		unknown = m.reidentify(&Maildrop{Records: donors}, msgs, unknown, fps, v, used, ch)
	}
	for _, i := range unknown {
		msg := msgs[i]
		id := ids[msg.UID]
		u := ""
		if m.reuseXUIDL && id != nil && pop3.ValidUIDL(id.XUIDL) {
			u = id.XUIDL
		}
		if u == "" {
			u = m.format.UIDL(uidValidity, msg.UID, id)
		}
		u = unique(u, used)
		used[u] = struct{}{}
		v.UIDLs[i] = u
		v.Assigned++
		ch.Add = append(ch.Add, Record{UID: msg.UID, UIDL: u, FP: fps[msg.UID]})
	}
	slices.SortFunc(ch.Add, func(a, b Record) int { return cmp.Compare(a.UID, b.UID) })
	if err := m.store.Apply(ctx, key, ch); err != nil {
		return nil, fmt.Errorf("uidmap: store %d UIDLs for %s: %w", len(ch.Add), key.User, err)
	}
	return v, nil
}

// reidentify matches the messages at indexes unknown to the records of the
// old UIDVALIDITY, in passes from the strongest identity to the weakest:
// Message-ID and size, then header hash and size. Duplicates (the same
// message stored twice) are paired in order of INTERNALDATE and UID on both
// sides, so the outcome is deterministic. Matched messages get their old
// UIDL and hidden mark; the rest is returned.
func (m *Map) reidentify(drop *Maildrop, msgs []Message, unknown []int, fps map[uint32]Fingerprint,
	v *View, used map[string]struct{}, ch *Change) []int {
	old := slices.Clone(drop.Records)
	byAge := func(a, b Record) int {
		return cmp.Or(cmp.Compare(a.FP.Date, b.FP.Date), cmp.Compare(a.UID, b.UID))
	}
	slices.SortFunc(old, byAge)
	taken := make([]bool, len(old))
	passes := []func(Fingerprint) string{
		func(fp Fingerprint) string {
			if fp.MessageID == "" {
				return ""
			}
			return "m" + fp.MessageID + "/" + strconv.FormatInt(fp.Size, 10)
		},
		func(fp Fingerprint) string {
			if fp.HeaderHash == "" {
				return ""
			}
			return "h" + fp.HeaderHash + "/" + strconv.FormatInt(fp.Size, 10)
		},
	}
	for _, keyOf := range passes {
		candidates := make(map[string][]int) // key → indexes into old, oldest first
		for j, r := range old {
			if k := keyOf(r.FP); k != "" && !taken[j] {
				candidates[k] = append(candidates[k], j)
			}
		}
		// New messages in the same order as the old ones: by date, then UID.
		slices.SortFunc(unknown, func(a, b int) int {
			return byAge(Record{UID: msgs[a].UID, FP: fps[msgs[a].UID]}, Record{UID: msgs[b].UID, FP: fps[msgs[b].UID]})
		})
		rest := unknown[:0]
		for _, i := range unknown {
			k := keyOf(fps[msgs[i].UID])
			if list := candidates[k]; k != "" && len(list) > 0 {
				r := old[list[0]]
				candidates[k] = list[1:]
				taken[list[0]] = true
				v.UIDLs[i], v.Hidden[i] = r.UIDL, r.Hidden
				used[r.UIDL] = struct{}{}
				v.Kept++
				ch.Add = append(ch.Add, Record{UID: msgs[i].UID, UIDL: r.UIDL, Hidden: r.Hidden, FP: fps[msgs[i].UID]})
				continue
			}
			rest = append(rest, i)
		}
		unknown = rest
	}
	// UIDLs of old messages that are gone stay out of reach of new ones.
	for j, r := range old {
		if !taken[j] {
			used[r.UIDL] = struct{}{}
		}
	}
	slices.Sort(unknown)
	return unknown
}

// SetHidden records hidden marks (policy.on_dele: hide, or state mark-old)
// for messages of the current UIDVALIDITY that Resolve has named.
func (m *Map) SetHidden(ctx context.Context, key Key, uidValidity uint32, uids []uint32, hidden bool) error {
	if len(uids) == 0 {
		return nil
	}
	drop, err := m.store.Load(ctx, key)
	if err != nil {
		return fmt.Errorf("uidmap: load %s: %w", key.User, err)
	}
	if drop.UIDValidity != uidValidity {
		return fmt.Errorf("uidmap: %s: UIDVALIDITY %d is not the stored %d: %w", key.User, uidValidity, drop.UIDValidity, ErrStale)
	}
	ch := &Change{Expect: drop.UIDValidity, UIDValidity: uidValidity}
	for _, uid := range uids {
		r, ok := drop.Find(uid)
		if !ok {
			return fmt.Errorf("uidmap: %s: UID %d was never named: %w", key.User, uid, ErrStale)
		}
		r.Hidden = hidden
		ch.Put = append(ch.Put, r)
	}
	return m.store.Apply(ctx, key, ch)
}

// unique returns u, or u with a "-N" suffix when u is taken, as Dovecot's
// pop3_uidl_duplicates=rename does. The result stays within 70 octets.
func unique(u string, used map[string]struct{}) string {
	if _, taken := used[u]; !taken {
		return u
	}
	for n := 2; ; n++ {
		suffix := "-" + strconv.Itoa(n)
		base := u
		if len(base)+len(suffix) > 70 {
			base = base[:70-len(suffix)]
		}
		if _, taken := used[base+suffix]; !taken {
			return base + suffix
		}
	}
}
