package pop3

import "iter"

// maildrop is the TRANSACTION state's arithmetic over the snapshot that
// Session.Messages returned: message numbers (1-based), the deletion marks
// of DELE and RSET, and the totals STAT, LIST and RSET report. The backend
// learns of the marks only in UPDATE (deleted).
type maildrop struct {
	msgs     []Message
	marked   []bool // marked[i]: message i+1 is marked deleted
	size     int64  // octets of all msgs
	nMarked  int
	markedSz int64 // octets of the marked messages
}

func newMaildrop(msgs []Message) maildrop {
	d := maildrop{msgs: msgs, marked: make([]bool, len(msgs))}
	for _, m := range msgs {
		d.size += m.Size
	}
	return d
}

// stat returns the number and octets of the messages not marked deleted.
func (d *maildrop) stat() (count int, size int64) {
	return len(d.msgs) - d.nMarked, d.size - d.markedSz
}

// exists reports whether n numbers a message of the snapshot.
func (d *maildrop) exists(n int) bool { return n >= 1 && n <= len(d.msgs) }

// isDeleted reports whether message n, which exists, is marked deleted.
func (d *maildrop) isDeleted(n int) bool { return d.marked[n-1] }

// message returns message n, which exists.
func (d *maildrop) message(n int) Message { return d.msgs[n-1] }

// dele marks message n, which exists and is not marked yet.
func (d *maildrop) dele(n int) {
	d.marked[n-1] = true
	d.nMarked++
	d.markedSz += d.msgs[n-1].Size
}

// reset removes every mark (RSET).
func (d *maildrop) reset() {
	clear(d.marked)
	d.nMarked, d.markedSz = 0, 0
}

// listed yields the messages not marked deleted, with their numbers, in
// order.
func (d *maildrop) listed() iter.Seq2[int, Message] {
	return func(yield func(int, Message) bool) {
		for i, m := range d.msgs {
			if !d.marked[i] && !yield(i+1, m) {
				return
			}
		}
	}
}

// next returns the first message after n not marked deleted, or 0.
func (d *maildrop) next(n int) int {
	for m := n + 1; m <= len(d.msgs); m++ {
		if !d.marked[m-1] {
			return m
		}
	}
	return 0
}

// deleted returns the numbers of the marked messages in ascending order,
// for Session.Update; never nil.
func (d *maildrop) deleted() []int {
	out := make([]int, 0, d.nMarked)
	for i, marked := range d.marked {
		if marked {
			out = append(out, i+1)
		}
	}
	return out
}
