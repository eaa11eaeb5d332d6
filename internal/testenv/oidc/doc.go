// Package oidc runs a real OAuth 2.0 / OpenID Connect authorization server
// for tests: zitadel/oidc's example OpenID Provider (its exampleop login and
// device pages on its in-memory storage), in the test process, on a free
// loopback port.
//
//	as := oidc.Start(t)
//	as.AddUser("alice@example.org", "pw")        // a user who can sign in
//	cfg := as.DeviceClient()                      // an oauth2.Config: device flow, refresh
//	da, _ := cfg.DeviceAuth(ctx)                  // what `popbridge oauth2 enroll` prints
//	as.ApproveDevice(ctx, da.VerificationURIComplete, "alice@example.org", "pw")
//	tok, _ := cfg.DeviceAccessToken(ctx, da)      // access and refresh token
//
// It is the provider's own code that answers: the device authorization
// grant (RFC 8628), refresh tokens with rotation (a refresh token is
// consumed by its use and a new one issued, RFC 6819 5.2.2.3), revocation
// (RFC 7009) and token introspection (RFC 7662), which Dovecot's `passdb
// oauth2` calls as a resource server (dovecot.WithOAuth2Introspection with
// Server.IntrospectionURL and the resource client's credentials). Nothing
// here hand-writes a token endpoint: the package only registers two clients,
// keeps a user list, and approves a device code through the provider's own
// HTML pages (/device, /device/login, /device/confirm) as a person with a
// browser would.
//
// Three adjustments to the example, all through its interfaces rather than
// copies of its code: the device client is also allowed the refresh_token
// grant (the example's DeviceClient has the device grant only); a device
// flow's refresh token records its client (the example records it for the
// code flow only, so the first refresh would fail); and tokens issued by
// the device and code flows also name the resource client in their
// audience, because the example's introspection answers only clients in a
// token's audience, as a real provider with a resource server would.
//
// The example fixes a token's lifetime (access tokens 5 minutes, refresh
// tokens 5 hours) and the device poll interval (5 s; it does not enforce
// slow_down, so a test may poll faster). Tests that need an expired access
// token revoke it (Server.Revoke) rather than wait.
//
// A third client, native and public (Server.NativeClient), takes the
// authorization-code flow with PKCE and a loopback redirect, as Google's
// "Desktop app" clients do; Server.ApproveAuthCode signs in on the
// provider's login page and returns the address the browser is sent to.
//
// Nothing outside the Go module is needed, so unlike the Dovecot and
// PostgreSQL harnesses this one is never unavailable.
package oidc
