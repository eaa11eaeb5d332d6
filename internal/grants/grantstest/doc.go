// Package grantstest is the conformance suite every grants.Store passes
// (uidmap/boltstore, uidmap/pgstore): the compare-and-swap that keeps one
// rotated refresh token, versions never reused, and the refresh lease.
package grantstest
