//go:build unix

package pop3

import (
	"errors"
	"syscall"
)

// idleWaitSupported: readable works here.
const idleWaitSupported = true

// readable reports whether the socket fd has input, an EOF or an error
// waiting, without reading it (MSG_PEEK). Only EAGAIN is "not yet":
// anything else is left to the Read that follows, which reports it.
func readable(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EWOULDBLOCK)
}
