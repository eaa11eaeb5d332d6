package pgstore

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/popbridge/popbridge/uidmap"
)

// rowDecoder turns loadSQL's raw rows into records without pgx's generic
// scanning, which costs about ten allocations per row: a login on a
// 50,000-message maildrop reads 50,000 rows. Rows are gathered in
// pointer-free form (numbers, and the strings' bytes in one arena), sized
// by the maildrop's record count from the first row, and turned into
// records at the end: one exactly-sized slice and one string for all the
// strings. Growing a slice of records row by row instead cost half of
// Load: records hold strings, so each doubling clears and copies pointer
// memory, under write barriers while the GC runs. pgx asks for bigint and
// boolean in binary; with default_query_exec_mode=simple_protocol in the
// DSN (for PgBouncer) the server sends text, which is decoded too.
type rowDecoder struct {
	binary      [9]bool // per column: binary, else text format
	uidValidity uint32
	rows        []rawRecord
	arena       []byte
}

// rawRecord is a record whose strings are arena[start:ends[0]],
// arena[ends[0]:ends[1]] and arena[ends[1]:ends[2]].
type rawRecord struct {
	uid        uint32
	hidden     bool
	size, date int64
	start      int
	ends       [3]int
}

// bytesPerRecord is the arena's share of a record: a UIDL of 16 octets
// and a 24-octet hash, typically.
const bytesPerRecord = 48

func newRowDecoder(fields []pgconn.FieldDescription) *rowDecoder {
	d := &rowDecoder{}
	for i := range min(len(fields), len(d.binary)) {
		d.binary[i] = fields[i].Format == pgx.BinaryFormatCode
	}
	return d
}

var errBadRow = errors.New("unexpected row from the database")

// add decodes one row of loadSQL: the maildrop's UIDVALIDITY and a record,
// or NULLs for a maildrop without records.
func (d *rowDecoder) add(vals [][]byte) error {
	if len(vals) != 9 {
		return fmt.Errorf("%w: %d columns", errBadRow, len(vals))
	}
	uv, err := d.int(0, vals[0])
	if err != nil {
		return err
	}
	if d.uidValidity = uint32(uv); vals[2] == nil {
		return nil
	}
	if d.rows == nil {
		n, err := d.int(1, vals[1])
		if err != nil {
			return err
		}
		n = min(max(n, 16), 1<<20) + 16 // a hint: a few more, and never absurd
		d.rows = make([]rawRecord, 0, n)
		d.arena = make([]byte, 0, n*bytesPerRecord)
	}
	var r rawRecord
	uid, err := d.int(2, vals[2])
	if err != nil {
		return err
	}
	r.uid = uint32(uid)
	if r.hidden, err = d.bool(4, vals[4]); err != nil {
		return err
	}
	if r.size, err = d.int(5, vals[5]); err != nil {
		return err
	}
	if r.date, err = d.int(6, vals[6]); err != nil {
		return err
	}
	r.start = len(d.arena)
	for i, col := range [3]int{3, 7, 8} {
		d.arena = append(d.arena, vals[col]...)
		r.ends[i] = len(d.arena)
	}
	d.rows = append(d.rows, r)
	return nil
}

// maildrop returns what the rows said, records in UID order. Nothing in it
// refers to the decoder's buffers.
func (d *rowDecoder) maildrop() *uidmap.Maildrop {
	out := &uidmap.Maildrop{UIDValidity: d.uidValidity}
	if len(d.rows) == 0 {
		return out
	}
	// Sorting the small pointer-free rows, rather than the records, moves
	// less memory and needs no write barriers.
	if !slices.IsSortedFunc(d.rows, byUID) {
		slices.SortFunc(d.rows, byUID)
	}
	all := string(d.arena)
	out.Records = make([]uidmap.Record, len(d.rows))
	for i, r := range d.rows {
		out.Records[i] = uidmap.Record{UID: r.uid, UIDL: all[r.start:r.ends[0]], Hidden: r.hidden,
			FP: uidmap.Fingerprint{Size: r.size, Date: r.date, MessageID: all[r.ends[0]:r.ends[1]], HeaderHash: all[r.ends[1]:r.ends[2]]}}
	}
	return out
}

func byUID(a, b rawRecord) int { return cmp.Compare(a.uid, b.uid) }

func (d *rowDecoder) int(col int, v []byte) (int64, error) {
	if d.binary[col] {
		if len(v) != 8 {
			return 0, fmt.Errorf("%w: column %d: %d bytes for a bigint", errBadRow, col, len(v))
		}
		return int64(binary.BigEndian.Uint64(v)), nil
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: column %d: %w", errBadRow, col, err)
	}
	return n, nil
}

func (d *rowDecoder) bool(col int, v []byte) (bool, error) {
	switch {
	case len(v) != 1:
	case d.binary[col]:
		return v[0] != 0, nil
	case v[0] == 't':
		return true, nil
	case v[0] == 'f':
		return false, nil
	}
	return false, fmt.Errorf("%w: column %d: %q for a boolean", errBadRow, col, v)
}
