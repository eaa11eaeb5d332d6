package daemon

import (
	"net"
	"testing"
	"time"
)

func TestLoginLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLoginLimiter(3, func() time.Time { return now })
	a := &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 1111}
	sameIP := &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 2222}
	b := &net.TCPAddr{IP: net.ParseIP("192.0.2.2"), Port: 1111}
	for i := range 3 {
		if ok, _ := l.Allow(a); !ok {
			t.Fatalf("attempt %d refused before the limit", i+1)
		}
		l.Failed(a)
	}
	ok, wait := l.Allow(sameIP)
	if ok || wait <= 0 || wait > 20*time.Second {
		t.Fatalf("after 3 failures: allowed=%v wait=%v, want refused with about 20s", ok, wait)
	}
	if ok, _ := l.Allow(b); !ok {
		t.Fatal("another address is limited too")
	}
	now = now.Add(wait)
	if ok, _ := l.Allow(a); !ok {
		t.Fatal("not allowed again after the wait it announced")
	}
	if newLoginLimiter(0, time.Now) != nil {
		t.Fatal("0 must disable the limiter")
	}
}
