package dovecot

import (
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
)

// Ports handed out for servers that bind them later come from below Linux's
// ephemeral range (32768-60999 by default). A port freed by a listen on
// ":0" is in that range, and there any outgoing connection of a busy test
// run may take it as its source port before the server binds it.
const (
	portLow  = 12000
	portHigh = 32000
)

// FreeAddr returns host:port for a port that nothing listens on right now,
// for a server that a test starts and that must bind a known address.
func FreeAddr(t testing.TB, host string) string {
	t.Helper()
	for range 200 {
		p := portLow + rand.IntN(portHigh-portLow)
		addr := net.JoinHostPort(host, strconv.Itoa(p))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		l.Close()
		return addr
	}
	t.Fatalf("dovecot: no free port on %s", host)
	return ""
}
