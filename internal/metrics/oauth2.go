package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/popbridge/popbridge/internal/grants"
)

// oauth2Outcomes are the outcome label's values: grants'.
var oauth2Outcomes = []grants.Outcome{grants.Refreshed, grants.Waited, grants.Revoked, grants.Failed}

func newOAuth2Refreshes() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "oauth2_refreshes_total",
		Help: "Upstream OAuth2 access tokens due at a login, by outcome: refreshed (by this instance), waited (another login or instance refreshed it), revoked (the provider refused the grant: the user must be enrolled again), failed (the provider could not be asked).",
	}, []string{"outcome"})
	for _, o := range oauth2Outcomes {
		c.WithLabelValues(string(o))
	}
	return c
}

// OAuth2Refresh counts one refresh outcome; it is grants.Options.Observe.
func (m *Metrics) OAuth2Refresh(_ grants.Key, o grants.Outcome, _ error) {
	m.oauth2Refreshes.WithLabelValues(string(o)).Inc()
}
