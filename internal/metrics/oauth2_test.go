package metrics

import (
	"testing"

	"github.com/popbridge/popbridge/internal/grants"
)

func TestOAuth2Refreshes(t *testing.T) {
	m := New("test")
	m.OAuth2Refresh(grants.Key{User: "u"}, grants.Revoked, nil)
	m.OAuth2Refresh(grants.Key{User: "u"}, grants.Refreshed, nil)
	m.OAuth2Refresh(grants.Key{User: "v"}, grants.Refreshed, nil)
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "popbridge_oauth2_refreshes_total" {
			continue
		}
		for _, s := range f.GetMetric() {
			got[s.GetLabel()[0].GetValue()] = s.GetCounter().GetValue()
		}
	}
	want := map[string]float64{"refreshed": 2, "revoked": 1, "waited": 0, "failed": 0}
	if len(got) != len(want) {
		t.Fatalf("series %v, want %v", got, want)
	}
	for o, n := range want {
		if got[o] != n {
			t.Errorf("popbridge_oauth2_refreshes_total{outcome=%q} = %v, want %v", o, got[o], n)
		}
	}
}
