package storetest

import (
	"context"
	"fmt"
	"time"

	"github.com/popbridge/popbridge/uidmap"
)

// Mailbox is a snapshot of n messages (UIDs 1..n, sizes 2000–6999) and the
// identities the upstream would report for them, each with a Message-ID:
// the mailbox of the stores' BenchmarkResolve50k, shared so that their
// figures compare.
func Mailbox(n int) ([]uidmap.Message, uidmap.Identifier) {
	msgs := make([]uidmap.Message, n)
	for i := range msgs {
		msgs[i] = uidmap.Message{UID: uint32(i + 1), Size: int64(2000 + i%5000)}
	}
	identify := func(_ context.Context, uids []uint32) ([]uidmap.Identity, error) {
		out := make([]uidmap.Identity, len(uids))
		for i, uid := range uids {
			out[i] = uidmap.Identity{UID: uid, InternalDate: time.Unix(1700000000+int64(uid), 0),
				MessageID: fmt.Sprintf("<%d.%d@mail.example.org>", uid, uid*7919)}
		}
		return out, nil
	}
	return msgs, identify
}
