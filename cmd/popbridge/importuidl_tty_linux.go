//go:build linux

package main

import (
	"os"
	"syscall"
	"unsafe"
)

// noEcho switches off echo on the terminal f, when f is one, and returns
// how to switch it back; ok is false when f is not a terminal.
func noEcho(f *os.File) (restore func(), ok bool) {
	fd := f.Fd()
	var t syscall.Termios
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TCGETS, uintptr(unsafe.Pointer(&t))); errno != 0 {
		return nil, false
	}
	saved := t
	t.Lflag &^= syscall.ECHO
	t.Lflag |= syscall.ICANON | syscall.ECHONL
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TCSETS, uintptr(unsafe.Pointer(&t))); errno != 0 {
		return nil, false
	}
	return func() {
		syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TCSETS, uintptr(unsafe.Pointer(&saved)))
	}, true
}
