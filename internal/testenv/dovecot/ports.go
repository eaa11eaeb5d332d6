package dovecot

import (
	"testing"

	"github.com/popbridge/popbridge/internal/testenv"
)

// FreeAddr returns host:port for a port that nothing listens on right now,
// for a server that a test starts and that must bind a known address (see
// testenv.FreeAddr).
func FreeAddr(t testing.TB, host string) string {
	t.Helper()
	addr, err := testenv.FreeAddr(host)
	if err != nil {
		t.Fatalf("dovecot: %v", err)
	}
	return addr
}
