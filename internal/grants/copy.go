package grants

import (
	"context"
	"errors"
	"fmt"
)

// CopyResult is what Copy did.
type CopyResult struct {
	Copied  int   // grants written to the destination
	Present []Key // the destination had a grant for them already: kept
}

// Copy copies the sealed grants of keys from src to dst as they are (they
// stay sealed: both stores must be used with the same state.secret_file).
// A grant the destination has already is left alone: it may be newer
// (a refresh there), and the other one's refresh token may be spent.
func Copy(ctx context.Context, dst, src Store, keys []Key) (CopyResult, error) {
	var res CopyResult
	for _, k := range keys {
		st, err := src.LoadGrant(ctx, k)
		if errors.Is(err, ErrNoGrant) {
			continue
		}
		if err != nil {
			return res, fmt.Errorf("grants: copy %s on %s: %w", k.User, k.Upstream, err)
		}
		_, err = dst.SwapGrant(ctx, k, 0, st.Data)
		switch {
		case errors.Is(err, ErrConflict):
			res.Present = append(res.Present, k)
		case err != nil:
			return res, fmt.Errorf("grants: copy %s on %s: %w", k.User, k.Upstream, err)
		default:
			res.Copied++
		}
	}
	return res, nil
}
