// Package storetest is the conformance suite every uidmap.Store must pass:
// the store's own operations and the whole UIDL mapping built on it. Each
// store's tests call Run with a constructor, so the embedded and the shared
// stores are held to exactly the same behaviour.
package storetest
