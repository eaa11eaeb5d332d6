// Package apppasstest is the conformance suite every apppass.Store passes
// (uidmap/boltstore, uidmap/pgstore), run through apppass.Passwords: several
// passwords per user, each checked, listed and revoked on its own.
package apppasstest
