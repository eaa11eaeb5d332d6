package pgstore_test

import (
	"testing"

	"github.com/popbridge/popbridge/internal/apppass"
	"github.com/popbridge/popbridge/internal/apppass/apppasstest"
	"github.com/popbridge/popbridge/internal/grants"
	"github.com/popbridge/popbridge/internal/grants/grantstest"
	"github.com/popbridge/popbridge/internal/testenv/postgres"
	"github.com/popbridge/popbridge/uidmap/pgstore"
)

func TestGrantStore(t *testing.T) {
	grantstest.Run(t, func(t *testing.T) grants.Store {
		return open(t, postgres.DSN(t), pgstore.Options{})
	})
}

func TestAppPasswordStore(t *testing.T) {
	apppasstest.Run(t, func(t *testing.T) apppass.Store {
		return open(t, postgres.DSN(t), pgstore.Options{})
	})
}
