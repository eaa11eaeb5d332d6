package proxy_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/popbridge/popbridge/internal/testenv/postgres"
)

// TestMain fails the package's tests if any goroutine is left running after
// them: every session, upstream connection and reader must end with its
// connection, whatever fault ended it (faults_test.go). It stops the
// PostgreSQL cluster that the shared-store tests start.
func TestMain(m *testing.M) {
	code := postgres.Run(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goroutines left running: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}
