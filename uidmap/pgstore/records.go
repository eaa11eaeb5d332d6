package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/popbridge/popbridge/uidmap"
)

// loadSQL reads a maildrop in one statement, so in one snapshot: its
// UIDVALIDITY and record count on every row, and its records, or one row
// of NULLs when it has none (a maildrop whose messages are all gone keeps
// its UIDVALIDITY, which Change.Expect is compared with). LATERAL makes the
// records a scan of the primary key (maildrop_id, uid) for this maildrop
// only, never a join over the whole table. There is deliberately no ORDER
// BY: the planner, estimating a maildrop at the table's average size,
// reads a large one with a bitmap scan and then sorts 50,000 rows past
// work_mem, on disk (50-100 ms, against 12 ms for the scan). Rows come in
// UID order or nearly (as written), and the decoder sorts what is not.
const loadSQL = `
SELECT m.uidvalidity, m.nrecords, r.uid, r.uidl, r.hidden, r.size, r.date, r.msgid_hash, r.header_hash
FROM popbridge_maildrops m
LEFT JOIN LATERAL (
	SELECT uid, uidl, hidden, size, date, msgid_hash, header_hash
	FROM popbridge_records WHERE maildrop_id = m.id
) r ON true
WHERE m.upstream = $1 AND m.username = $2 AND m.mailbox = $3`

// Load implements uidmap.Store.
func (s *Store) Load(ctx context.Context, key uidmap.Key) (*uidmap.Maildrop, error) {
	rows, err := s.pool.Query(ctx, loadSQL, key.Upstream, key.User, key.Mailbox)
	if err != nil {
		return nil, fmt.Errorf("pgstore: load: %w", err)
	}
	defer rows.Close()
	dec := newRowDecoder(rows.FieldDescriptions())
	for rows.Next() {
		if err := dec.add(rows.RawValues()); err != nil {
			return nil, fmt.Errorf("pgstore: load: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: load: %w", err)
	}
	return dec.maildrop(), nil
}

// readCommitted is asked for explicitly, whatever the database's default:
// once a transaction has the maildrop's row lock, each later statement must
// see what the transaction that held it before committed.
var readCommitted = pgx.TxOptions{IsoLevel: pgx.ReadCommitted}

// copyThreshold is the size from which Add and Put rows go by COPY rather
// than one INSERT of unnested arrays: COPY costs round trips of its own but
// writes large batches faster.
const copyThreshold = 256

// Apply implements uidmap.Store: one transaction that locks the maildrop's
// row (creating it if needed) before comparing, so that two changes to one
// maildrop never interleave.
func (s *Store) Apply(ctx context.Context, key uidmap.Key, ch *uidmap.Change) error {
	err := pgx.BeginTxFunc(ctx, s.pool, readCommitted, func(tx pgx.Tx) error {
		id, stored, err := lockMaildrop(ctx, tx, key)
		if err != nil {
			return err
		}
		if stored != ch.Expect {
			return fmt.Errorf("pgstore: stored UIDVALIDITY %d, change computed from %d: %w", stored, ch.Expect, uidmap.ErrStale)
		}
		b := &pgx.Batch{}
		if stored != ch.UIDValidity {
			// The stored UIDs name other messages now: they go. A maildrop
			// that had records takes a new id, so that the new records'
			// keys do not land among the dead ones in the primary key
			// index (where each insert would check them against the heap).
			old := id
			if stored != 0 {
				if err := tx.QueryRow(ctx, `UPDATE popbridge_maildrops
					SET id = nextval(pg_get_serial_sequence('popbridge_maildrops', 'id')) WHERE id = $1 RETURNING id`,
					old).Scan(&id); err != nil {
					return err
				}
			}
			b.Queue(`DELETE FROM popbridge_records WHERE maildrop_id = $1`, old)
			b.Queue(`UPDATE popbridge_maildrops SET uidvalidity = $2, nrecords = $3 WHERE id = $1`,
				id, int64(ch.UIDValidity), len(ch.Add)+len(ch.Put))
		} else if len(ch.Delete) > 0 || len(ch.Add) > 0 {
			uids := make([]int64, len(ch.Delete))
			for i, uid := range ch.Delete {
				uids[i] = int64(uid)
			}
			b.Queue(`WITH d AS (DELETE FROM popbridge_records WHERE maildrop_id = $1 AND uid = ANY($2) RETURNING 1)
				UPDATE popbridge_maildrops SET nrecords = greatest(nrecords + $3 - (SELECT count(*) FROM d), 0) WHERE id = $1`,
				id, uids, len(ch.Add))
		}
		// A UID in Add that is stored already violates the primary key:
		// another session named it first.
		bulkAdd := len(ch.Add) >= copyThreshold
		if len(ch.Add) > 0 && !bulkAdd {
			queueInsert(b, id, ch.Add, "")
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		if bulkAdd {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"popbridge_records"}, recordColumns, &recordSource{id: id, recs: ch.Add}); err != nil {
				return err
			}
		}
		if len(ch.Put) > 0 {
			return putRecords(ctx, tx, id, ch.Put)
		}
		return nil
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505": // unique_violation
			return fmt.Errorf("pgstore: a UID in the change was named by another session: %w", uidmap.ErrStale)
		case "40001": // serialization_failure, where a database runs everything serializable
			return fmt.Errorf("pgstore: a concurrent change won: %w: %w", uidmap.ErrStale, err)
		}
	}
	if err != nil && !errors.Is(err, uidmap.ErrStale) {
		return fmt.Errorf("pgstore: apply: %w", err)
	}
	return err
}

// lockMaildrop returns the maildrop's id and stored UIDVALIDITY with its
// row locked until the transaction ends, inserting the row when the
// maildrop is new. Of two transactions inserting the same new maildrop, the
// second waits for the first, finds the row taken, and locks it instead.
func lockMaildrop(ctx context.Context, tx pgx.Tx, key uidmap.Key) (id int64, uidValidity uint32, err error) {
	var uv int64
	for range 3 {
		err = tx.QueryRow(ctx, `SELECT id, uidvalidity FROM popbridge_maildrops
			WHERE upstream = $1 AND username = $2 AND mailbox = $3 FOR UPDATE`,
			key.Upstream, key.User, key.Mailbox).Scan(&id, &uv)
		if !errors.Is(err, pgx.ErrNoRows) {
			return id, uint32(uv), err
		}
		err = tx.QueryRow(ctx, `INSERT INTO popbridge_maildrops (upstream, username, mailbox) VALUES ($1, $2, $3)
			ON CONFLICT (upstream, username, mailbox) DO NOTHING RETURNING id, uidvalidity`,
			key.Upstream, key.User, key.Mailbox).Scan(&id, &uv)
		if !errors.Is(err, pgx.ErrNoRows) {
			return id, uint32(uv), err
		}
		// Another transaction inserted it meanwhile (or Reset removed it
		// again): look again.
	}
	return 0, 0, fmt.Errorf("pgstore: maildrop row of %s keeps changing: %w", key.User, uidmap.ErrStale)
}

var recordColumns = []string{"maildrop_id", "uid", "uidl", "hidden", "size", "date", "msgid_hash", "header_hash"}

// queueInsert queues one INSERT of recs as unnested arrays: one statement
// and one round trip whatever their number. suffix is an ON CONFLICT clause
// or "".
func queueInsert(b *pgx.Batch, id int64, recs []uidmap.Record, suffix string) {
	n := len(recs)
	uids, sizes, dates := make([]int64, n), make([]int64, n), make([]int64, n)
	uidls, mids, hhs := make([]string, n), make([]string, n), make([]string, n)
	hidden := make([]bool, n)
	for i, r := range recs {
		uids[i], uidls[i], hidden[i] = int64(r.UID), r.UIDL, r.Hidden
		sizes[i], dates[i], mids[i], hhs[i] = r.FP.Size, r.FP.Date, r.FP.MessageID, r.FP.HeaderHash
	}
	b.Queue(`INSERT INTO popbridge_records (maildrop_id, uid, uidl, hidden, size, date, msgid_hash, header_hash)
		SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::boolean[], $5::bigint[], $6::bigint[], $7::text[], $8::text[])`+suffix,
		id, uids, uidls, hidden, sizes, dates, mids, hhs)
}

const upsertSuffix = `
	ON CONFLICT (maildrop_id, uid) DO UPDATE SET uidl = excluded.uidl, hidden = excluded.hidden,
		size = excluded.size, date = excluded.date, msgid_hash = excluded.msgid_hash, header_hash = excluded.header_hash`

// putRecords writes recs, replacing stored records of the same UIDs. Of
// several records of one UID the last wins, as in the other stores (an
// upsert may not touch one row twice).
func putRecords(ctx context.Context, tx pgx.Tx, id int64, recs []uidmap.Record) error {
	last := make(map[uint32]int, len(recs))
	for i, r := range recs {
		last[r.UID] = i
	}
	if len(last) < len(recs) {
		dedup := make([]uidmap.Record, 0, len(last))
		for i, r := range recs {
			if last[r.UID] == i {
				dedup = append(dedup, r)
			}
		}
		recs = dedup
	}
	b := &pgx.Batch{}
	queueInsert(b, id, recs, upsertSuffix)
	return tx.SendBatch(ctx, b).Close()
}

// recordSource feeds records to COPY.
type recordSource struct {
	id   int64
	recs []uidmap.Record
	i    int
	row  [8]any
}

func (s *recordSource) Next() bool {
	s.i++
	return s.i <= len(s.recs)
}

func (s *recordSource) Values() ([]any, error) {
	r := &s.recs[s.i-1]
	s.row = [8]any{s.id, int64(r.UID), r.UIDL, r.Hidden, r.FP.Size, r.FP.Date, r.FP.MessageID, r.FP.HeaderHash}
	return s.row[:], nil
}

func (s *recordSource) Err() error { return nil }

// Reset implements uidmap.Store. The maildrop's row is locked first, as
// Apply does: a change in progress ends before, and the records it wrote
// are then seen and deleted with the rest.
func (s *Store) Reset(ctx context.Context, key uidmap.Key) error {
	err := pgx.BeginTxFunc(ctx, s.pool, readCommitted, func(tx pgx.Tx) error {
		var id int64
		err := tx.QueryRow(ctx, `SELECT id FROM popbridge_maildrops
			WHERE upstream = $1 AND username = $2 AND mailbox = $3 FOR UPDATE`,
			key.Upstream, key.User, key.Mailbox).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		b := &pgx.Batch{}
		b.Queue(`DELETE FROM popbridge_records WHERE maildrop_id = $1`, id)
		b.Queue(`DELETE FROM popbridge_maildrops WHERE id = $1`, id)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("pgstore: reset: %w", err)
	}
	return nil
}
