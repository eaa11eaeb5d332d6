package lean

import (
	"net"
	"testing"
)

// TestHold: what is written while held reaches the peer in one write at
// Flush (over net.Pipe an unheld write would block until read), and
// writes after it go through at once.
func TestHold(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	l := New(a)
	l.Hold()
	for _, s := range []string{"T1 LOGIN u p\r\n", "T2 SELECT INBOX\r\n"} {
		if n, err := l.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("held Write = %d, %v", n, err)
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- l.Flush() }()
	buf := make([]byte, 100)
	n, err := b.Read(buf)
	if err != nil || string(buf[:n]) != "T1 LOGIN u p\r\nT2 SELECT INBOX\r\n" {
		t.Fatalf("peer read %q, %v; want both commands in one write", buf[:n], err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if err := l.Flush(); err != nil {
		t.Fatalf("second Flush: %v", err)
	}
	go func() { _, err := l.Write([]byte("T3 NOOP\r\n")); errc <- err }()
	if n, err = b.Read(buf); err != nil || string(buf[:n]) != "T3 NOOP\r\n" {
		t.Fatalf("after Flush the peer read %q, %v", buf[:n], err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
