package grants

import (
	"errors"
	"testing"
)

func TestProviderConfig(t *testing.T) {
	ms, err := Provider{Name: "microsoft", ClientID: "c", Tenant: "contoso.onmicrosoft.com"}.OAuth2Config()
	if err != nil || ms.Endpoint.DeviceAuthURL != "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/devicecode" ||
		ms.Endpoint.TokenURL != "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token" ||
		len(ms.Scopes) != 2 || ms.Scopes[1] != "offline_access" {
		t.Fatalf("microsoft: %+v %v", ms, err)
	}
	if def, _ := (Provider{Name: "microsoft", ClientID: "c"}).OAuth2Config(); def.Endpoint.TokenURL != "https://login.microsoftonline.com/organizations/oauth2/v2.0/token" {
		t.Fatalf("microsoft without a tenant: %s", def.Endpoint.TokenURL)
	}
	g, err := Provider{Name: "generic", ClientID: "c", TokenURL: "https://id/t", DeviceAuthURL: "https://id/d", Scopes: []string{"s"}}.OAuth2Config()
	if err != nil || g.Endpoint.TokenURL != "https://id/t" || g.Scopes[0] != "s" {
		t.Fatalf("generic: %+v %v", g, err)
	}
	if _, err := (Provider{Name: "generic"}).OAuth2Config(); err == nil {
		t.Fatal("generic without endpoints")
	}
	if err := (Provider{Name: "google"}).CheckDeviceFlow(); !errors.Is(err, ErrNoDeviceFlow) {
		t.Fatalf("google's device flow: %v", err)
	}
	if err := (Provider{Name: "microsoft"}).CheckDeviceFlow(); err != nil {
		t.Fatal(err)
	}
	if (Provider{Name: "microsoft"}).Margin() != MicrosoftMargin || (Provider{Name: "generic"}).Margin() != DefaultMargin {
		t.Fatal("Microsoft's tokens must outlast a session")
	}
}
