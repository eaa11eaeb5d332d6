//go:build !unix

package pop3

// idleWaitSupported: no readiness wait here; idle connections keep their
// buffers.
const idleWaitSupported = false

func readable(uintptr) bool { return true }
