// Package oauth2user opens one user's upstream OAuth2 state from the
// configuration, for the `popbridge oauth2` subcommands: the user's
// upstream as a session picks it (routes included), that upstream's
// provider, the state store, the sealer from state.secret_file, and on
// them the user's grant (internal/grants) and app passwords
// (internal/apppass). cmd/popbridge keeps to flags and output.
//
// Upstreams is the same for serve: every upstream with an oauth2 block, as
// proxy.WithOAuth2 takes them.
package oauth2user
