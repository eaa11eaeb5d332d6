package proxy_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine is left running after
// them: every session, upstream connection and reader must end with its
// connection, whatever fault ended it (faults_test.go).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
