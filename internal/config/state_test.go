package config

import (
	"strings"
	"testing"
	"time"
)

const postgresState = `
upstream:
  address: imap.example.net:993
state:
  driver: postgres
  dsn: postgres://popbridge:pg-sekrit@db.example.net/popbridge
`

func TestStatePostgres(t *testing.T) {
	cfg, err := Parse([]byte(postgresState), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.State.Driver != "postgres" || cfg.State.LockLease != 30*time.Second {
		t.Fatalf("state = %+v, want postgres with the default lease of 30s", cfg.State)
	}
	out, err := cfg.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "pg-sekrit") {
		t.Fatalf("check-config output shows the DSN's password:\n%s", out)
	}
}

func TestStatePostgresNeedsDSN(t *testing.T) {
	_, err := Parse([]byte("upstream:\n  address: imap.example.net:993\nstate:\n  driver: postgres\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "state.dsn") {
		t.Fatalf("postgres without a DSN: %v, want an error naming state.dsn", err)
	}
}

// Containers keep the DSN (and its password) out of the file.
func TestStateFromEnvironment(t *testing.T) {
	cfg, err := Parse([]byte("upstream:\n  address: imap.example.net:993\n"), []string{
		"POPBRIDGE_STATE_DRIVER=postgres",
		"POPBRIDGE_STATE_DSN=host=db user=popbridge password=x dbname=popbridge",
		"POPBRIDGE_STATE_LOCK_LEASE=10s",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.State.Driver != "postgres" || cfg.State.DSN != "host=db user=popbridge password=x dbname=popbridge" || cfg.State.LockLease != 10*time.Second {
		t.Fatalf("state = %+v", cfg.State)
	}
}

func TestStateLockLeaseTooShort(t *testing.T) {
	_, err := Parse([]byte(postgresState+"  lock_lease: 500ms\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "state.lock_lease") {
		t.Fatalf("a lease of 500ms: %v, want an error naming state.lock_lease", err)
	}
}

// config.yaml.example documents the state keys with their defaults.
func TestStateExampleMatchesDefaults(t *testing.T) {
	cfg, err := Load("../../config.yaml.example", []string{"POPBRIDGE_UPSTREAM_ADDRESS=imap.example.net:993"})
	if err != nil {
		t.Fatal(err)
	}
	if def := Default().State; cfg.State != def {
		t.Fatalf("config.yaml.example state: %+v, defaults %+v", cfg.State, def)
	}
}
