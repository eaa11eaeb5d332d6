// Package grants keeps each user's upstream OAuth 2.0 grant (access token,
// refresh token, expiry) in the state store, sealed, and hands out a current
// access token, refreshing it once across every popbridge instance that
// shares the store.
//
// Sealed: a grant is encrypted with AES-256-GCM under a key derived (HKDF-
// SHA256) from the secret in state.secret_file, with the grant's upstream
// and user as additional data, so the store holds no token in clear and a
// sealed grant copied to another user's row does not open. The store only
// ever sees the sealed bytes and a version number.
//
// Refreshed once: Manager.AccessToken refreshes a grant that expires within
// Options.Margin (a token that is due but not expired is still used when
// the provider cannot be reached). Every instance that finds it so first tries to take the
// grant's refresh lease in the store (a row in PostgreSQL, valid for
// LeaseTTL, so a holder that dies frees it by itself); one wins and
// refreshes, the others wait for the grant's version to change and use the
// token it stored. The refresh itself is bounded by a timeout shorter than
// the lease, and its result is written with a compare-and-swap on the
// version: a rotated refresh token replaces exactly the one it was made
// from, and of two writers that both refreshed (a lease that expired under
// a stalled holder) the second finds the conflict and takes the first's.
//
// Revoked: when the provider refuses the refresh token (invalid_grant: the
// user or an admin revoked it, it expired, or the password changed), the
// grant is marked broken in the store, so that no instance asks the
// provider again with it, and AccessToken answers ErrReauthorize until the
// user is enrolled again.
//
// The key file, the grant's tokens and the sealed bytes are never logged:
// Grant's String and GoString print only its expiry.
package grants
