package oauth2user

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/popbridge/popbridge/internal/apppass"
	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/grants"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/uidmap"
)

// Upstreams are the OAuth2 upstreams of cfg (upstream: and routes with an
// oauth2 block), by address, for proxy.WithOAuth2 on serve's store: nil
// when there is none. observe (may be nil) is told of every refresh,
// for metrics and logs. The grants of all of them share one sealer,
// from state.secret_file.
func Upstreams(cfg *config.Config, store uidmap.Store, observe func(grants.Key, grants.Outcome, error)) (map[string]*proxy.OAuth2Upstream, error) {
	blocks := map[string]config.OAuth2{}
	add := func(key string, u config.Upstream) error {
		if !u.OAuth2.Enabled() {
			return nil
		}
		if prev, ok := blocks[u.Address]; ok && !reflect.DeepEqual(prev, u.OAuth2) {
			return fmt.Errorf("%s.oauth2: %s has another oauth2 block already: one upstream, one provider", key, u.Address)
		}
		blocks[u.Address] = u.OAuth2
		return nil
	}
	if err := add("upstream", cfg.Upstream); err != nil {
		return nil, err
	}
	for i, r := range cfg.Routes {
		if err := add(fmt.Sprintf("routes.%d.upstream", i), r.Upstream); err != nil {
			return nil, err
		}
	}
	if len(blocks) == 0 {
		return nil, nil
	}
	sealer, gs, ps, err := stores(cfg, store)
	if err != nil {
		return nil, err
	}
	passwords := apppass.New(ps, apppass.Params{})
	ups := make(map[string]*proxy.OAuth2Upstream, len(blocks))
	for addr, o := range blocks {
		_, m, err := manager(o, gs, sealer, grants.Options{Observe: observe})
		if err != nil {
			return nil, fmt.Errorf("oauth2 of %s: %w", addr, err)
		}
		ups[addr] = &proxy.OAuth2Upstream{
			Grants:    m,
			Passwords: passwords,
			Mechanism: strings.ToUpper(o.Mechanism),
		}
	}
	return ups, nil
}
