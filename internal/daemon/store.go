package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/uidmap"
	"github.com/popbridge/popbridge/uidmap/boltstore"
	"github.com/popbridge/popbridge/uidmap/pgstore"
)

// storeOpenTimeout bounds reaching the database at start: a popbridge that
// cannot reach its state store says so and exits, rather than hang.
const storeOpenTimeout = 30 * time.Second

// OpenStore opens the configured state store; serve, state and import-uidl
// all go through it. A bolt file that another process holds fails with
// boltstore.ErrBusy.
func OpenStore(sc config.State) (uidmap.Store, error) {
	switch sc.Driver {
	case "bolt":
		return boltstore.Open(sc.Path)
	case "postgres":
		ctx, cancel := context.WithTimeout(context.Background(), storeOpenTimeout)
		defer cancel()
		// pgstore's errors never carry the DSN's password.
		s, err := pgstore.Open(ctx, sc.DSN, pgstore.Options{LockLease: sc.LockLease})
		if err != nil {
			return nil, fmt.Errorf("state.driver postgres: %w", err)
		}
		return s, nil
	case "memory":
		return uidmap.NewMemoryStore(), nil
	default:
		return nil, fmt.Errorf("state.driver %q is not available in this version", sc.Driver)
	}
}

// StoreName names the configured store for messages: never the DSN, which
// may hold a password.
func StoreName(sc config.State) string {
	if sc.Driver == "postgres" {
		return "the PostgreSQL store"
	}
	return sc.Path
}
