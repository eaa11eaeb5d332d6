package grants

import (
	"context"
	"fmt"

	"golang.org/x/oauth2"
)

// EnrollDevice enrols a user with the device authorization grant (RFC
// 8628), which needs no browser on this machine: show is given the
// verification URL and the user code to tell the person enrolling, who
// opens the URL anywhere and signs in; EnrollDevice polls the provider
// meanwhile (at the interval it asks, which show may read) and stores the
// grant once approved. ctx bounds the wait (the code expires too).
func (m *Manager) EnrollDevice(ctx context.Context, k Key, show func(*oauth2.DeviceAuthResponse) error) error {
	ctx = context.WithValue(ctx, oauth2.HTTPClient, m.opts.HTTPClient)
	da, err := m.oauth.DeviceAuth(ctx)
	if err != nil {
		return fmt.Errorf("grants: device authorization: %w", err)
	}
	if err := show(da); err != nil {
		return err
	}
	tok, err := m.oauth.DeviceAccessToken(ctx, da)
	if err != nil {
		return fmt.Errorf("grants: waiting for the approval: %w", err)
	}
	return m.Enroll(ctx, k, tok)
}
