package daemon

import (
	"net"
	"testing"
)

func TestIPNets(t *testing.T) {
	nets, err := parseIPNets([]string{"10.0.0.5", "192.0.2.0/28", "2001:db8::/64"})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"10.0.0.5:1": true, "10.0.0.6:1": false, "192.0.2.15:1": true, "192.0.2.16:1": false,
		"[::ffff:10.0.0.5]:1": true, "[2001:db8::9]:1": true, "[2001:db9::9]:1": false,
	} {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := nets.contains(a); got != want {
			t.Errorf("%s: %v, want %v", addr, got, want)
		}
	}
	if nets.contains(nil) || nets.contains(&net.UnixAddr{Name: "/run/lb.sock", Net: "unix"}) {
		t.Error("an address without an IP is in a network")
	}
	if _, err := parseIPNets([]string{"lb.example.net"}); err == nil {
		t.Error("a host name parsed as a network")
	}
}
