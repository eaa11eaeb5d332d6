package uidmap_test

import (
	"testing"

	"github.com/popbridge/popbridge/uidmap"
	"github.com/popbridge/popbridge/uidmap/storetest"
)

func TestMemoryStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) uidmap.Store { return uidmap.NewMemoryStore() })
}
