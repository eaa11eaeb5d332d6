package imapupstream

import (
	"net"
	"os"
	"strconv"
	"strings"
)

// receiveBuffer is the receive buffer asked for the upstream socket.
//
// Messages fetched ahead (a batch of up to 1 MiB, see FetchAhead) arrive
// while the POP3 client is still reading the previous one. In the buffer
// the kernel starts a connection with, which it grows only as fast as it
// sees us read (on a fast link, hardly at all), the server soon has to wait
// for us, and each RETR then waits for it to send again, a few KB at a
// time. With room for a whole batch, the server sends it in one go and a
// RETR finds its message waiting.
//
// A fixed buffer also ends the kernel's own sizing, which can go higher on
// a link with a long round trip: 2 MiB still carries 60 MB/s at 30 ms, more
// than a POP3 session needs. The kernel holds the memory only while octets
// wait in it, never for an idle session.
const receiveBuffer = 2 << 20

// rmemMax is where Linux says how large a receive buffer a program may ask
// for (net.core.rmem_max).
const rmemMax = "/proc/sys/net/core/rmem_max"

// receiveBufferSize is receiveBuffer where the system allows a buffer that
// large, else 0. Below its limit the kernel would cut the value down to
// the limit (Debian's default: 208 KiB), which would cap a long link at a
// few MB/s: there, the kernel's own sizing is better.
func receiveBufferSize() int {
	b, err := os.ReadFile(rmemMax)
	if err != nil {
		return 0
	}
	max, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || max < receiveBuffer {
		return 0
	}
	return receiveBuffer
}

// sizeBuffer sets the receive buffer of a new upstream TCP connection.
// Best effort: a smaller buffer only costs speed.
func (d *Dialer) sizeBuffer(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok && d.rcvbuf > 0 {
		_ = tc.SetReadBuffer(d.rcvbuf)
	}
}
