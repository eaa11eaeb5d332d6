package boltstore_test

import (
	"path/filepath"
	"testing"

	"github.com/popbridge/popbridge/internal/apppass"
	"github.com/popbridge/popbridge/internal/apppass/apppasstest"
	"github.com/popbridge/popbridge/internal/grants"
	"github.com/popbridge/popbridge/internal/grants/grantstest"
	"github.com/popbridge/popbridge/uidmap/boltstore"
)

func TestGrantStore(t *testing.T) {
	grantstest.Run(t, func(t *testing.T) grants.Store {
		s, err := boltstore.Open(filepath.Join(t.TempDir(), "state.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestAppPasswordStore(t *testing.T) {
	apppasstest.Run(t, func(t *testing.T) apppass.Store {
		s, err := boltstore.Open(filepath.Join(t.TempDir(), "state.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
