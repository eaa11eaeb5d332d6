package proxy_test

import (
	"context"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/internal/testenv/postgres"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/uidmap/pgstore"
)

// TestLoginDelayAcrossInstances: two instances share PostgreSQL, and a
// balancer sends a client's second login to the other one: it is held
// back there too, until the delay has passed since the first.
func TestLoginDelayAcrossInstances(t *testing.T) {
	t.Parallel()
	dv := dovecot.Start(t)
	dsn := postgres.DSN(t)
	const delay = 3 * time.Second
	instance := func() *bridge {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := pgstore.Open(ctx, dsn, pgstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return startBridge(t, dv, withStore(s), withViews(func(o *proxy.Options) { o.LoginDelay = delay }))
	}
	a, b := instance(), instance()
	user := dovecot.User(t)
	first := time.Now()
	a.login(t, user).Quit()
	c := b.dial(t)
	if err := c.Login(user, b.Password); errCode(err) != "LOGIN-DELAY" {
		t.Fatalf("the second login, on the other instance: %v, want -ERR [LOGIN-DELAY]", err)
	}
	time.Sleep(time.Until(first.Add(delay + 200*time.Millisecond)))
	if err := c.Login(user, b.Password); err != nil {
		t.Fatalf("after the delay, on the same connection: %v", err)
	}
	c.Quit()
	if err := a.dial(t).Login(user, a.Password); errCode(err) != "LOGIN-DELAY" {
		t.Fatalf("the first instance after the other's login: %v, want -ERR [LOGIN-DELAY]", err)
	}
}
