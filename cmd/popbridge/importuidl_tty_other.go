//go:build !linux

package main

import "os"

// noEcho is only implemented on Linux: elsewhere a password typed at a
// terminal shows; pipe it in instead.
func noEcho(*os.File) (restore func(), ok bool) { return nil, false }
