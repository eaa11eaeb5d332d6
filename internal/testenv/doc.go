// Package testenv is what the throw-away servers for tests
// (internal/testenv/dovecot, internal/testenv/courier, and cmd/popbench's
// Dovecots) share: their directories and mail owner, free ports, the wait
// for a greeting, user names, a logged-in IMAP client, and the rule that CI
// never silently skips a test whose server is missing.
//
// The functions without a testing.TB return errors, for use outside tests.
package testenv
