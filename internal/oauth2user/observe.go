package oauth2user

import (
	"errors"

	"go.uber.org/zap"

	"github.com/popbridge/popbridge/internal/grants"
)

// ObserveRefreshes is grants.Options.Observe for serve (Upstreams'
// observe): it passes each outcome to count (e.g. metrics.OAuth2Refresh;
// nil for none) and logs it: a revoked grant as a warning naming the
// command the administrator must run, a failed refresh as a warning, the
// others at debug level. The errors grants reports carry the provider's
// error code and description, never a token.
func ObserveRefreshes(log *zap.Logger, count func(grants.Key, grants.Outcome, error)) func(grants.Key, grants.Outcome, error) {
	return func(k grants.Key, o grants.Outcome, err error) {
		if count != nil {
			count(k, o, err)
		}
		fields := []zap.Field{zap.String("user", k.User), zap.String("upstream", k.Upstream), zap.String("outcome", string(o))}
		switch {
		case o == grants.Revoked && errors.Is(err, grants.ErrAppRefused):
			log.Error("oauth2 app-only access refused by the provider: check client_id, the client secret or service account key, and the app's permissions", append(fields, zap.Error(err))...)
		case o == grants.Revoked:
			log.Warn("oauth2 grant refused by the provider: run popbridge oauth2 enroll "+k.User, append(fields, zap.Error(err))...)
		case o == grants.Failed:
			log.Warn("oauth2 refresh failed", append(fields, zap.Error(err))...)
		default:
			log.Debug("oauth2 access token refreshed", fields...)
		}
	}
}
