package pgstore_test

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testenv/postgres"
	"github.com/popbridge/popbridge/uidmap"
	"github.com/popbridge/popbridge/uidmap/pgstore"
)

// Sessions on two instances that see a maildrop at the same moment, for
// the first time and again after a UIDVALIDITY change, serve one mapping:
// the row lock and Change.Expect make all but one of them start again from
// the winner's state. Each session names messages with its own format, so
// a second winner would show.
func TestConcurrentSessionsOnTwoInstancesAgree(t *testing.T) {
	dsn := postgres.DSN(t)
	stores := []*pgstore.Store{open(t, dsn, pgstore.Options{}), open(t, dsn, pgstore.Options{})}
	const n = 300
	mailbox := func(firstUID uint32) ([]uidmap.Message, uidmap.Identifier) {
		msgs := make([]uidmap.Message, n)
		for i := range msgs {
			msgs[i] = uidmap.Message{UID: firstUID + uint32(i), Size: int64(1000 + i)}
		}
		return msgs, func(_ context.Context, uids []uint32) ([]uidmap.Identity, error) {
			out := make([]uidmap.Identity, len(uids))
			for i, uid := range uids {
				k := uid - firstUID
				out[i] = uidmap.Identity{UID: uid, MessageID: fmt.Sprintf("<%d@race>", k), InternalDate: time.Unix(1700000000+int64(k), 0)}
			}
			return out, nil
		}
	}
	race := func(uidValidity, firstUID uint32) [][]string {
		msgs, identify := mailbox(firstUID)
		const sessions = 8
		views := make([][]string, sessions)
		errs := make([]error, sessions)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range sessions {
			format, err := uidmap.ParseFormat(fmt.Sprintf("s%d-%%v-%%u", i))
			if err != nil {
				t.Fatal(err)
			}
			m := uidmap.New(stores[i%2], uidmap.Options{Format: format})
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				v, err := m.Resolve(context.Background(), key, uidValidity, msgs, identify)
				if err == nil {
					views[i] = v.UIDLs
				}
				errs[i] = err
			}()
		}
		close(start)
		wg.Wait()
		for i := range sessions {
			if errs[i] != nil {
				t.Fatalf("session %d: %v", i, errs[i])
			}
			if !reflect.DeepEqual(views[i], views[0]) {
				t.Fatalf("session %d serves %v…, session 0 %v…", i, views[i][:3], views[0][:3])
			}
		}
		return views
	}
	first := race(1, 1)
	// The mailbox is re-created upstream: new UIDs, same messages.
	after := race(2, 5001)
	if !reflect.DeepEqual(after[0], first[0]) {
		t.Fatalf("after the UIDVALIDITY change the UIDLs are %v…, before %v…", after[0][:3], first[0][:3])
	}
}
