package pop3

import (
	"bufio"
	"net"
	"runtime/debug"
	"syscall"
)

// An idle connection's buffers. A logged-in client may sit between commands
// for minutes (RFC 1939 allows ten), and a proxy in front of a big mail
// host holds thousands of such sessions: their memory is what one instance
// can hold. While a plain TCP connection waits for its next command with
// nothing buffered either way, its line reader and its writer (4 KiB each)
// go back to the Server's pools; the wait itself is for readability only
// (syscall.RawConn.Read), which reads nothing. Over TLS the buffers stay:
// crypto/tls keeps buffered records of its own that such a wait would not
// see. A connection that ends gives them back too, for the next one.
//
// The goroutine that waits keeps its stack. A login is the deepest work a
// session does (for a proxy: an upstream connection, its TLS, a database
// read), and Go shrinks a stack only at a GC and by half at a time, so the
// connection's goroutine would keep a login's stack for as long as the
// session idles: Backend.Login runs on a goroutine of its own instead, and
// its stack goes when it returns.

// lineBufSize is the size of a connection's line reader and writer.
const lineBufSize = 4096

// lineInitCap is the capacity a connection's command line buffer starts
// with: commands are short, and append grows it for the few long ones (up
// to the line limit) rather than every connection holding that limit.
const lineInitCap = 128

// idleWaiter returns the raw connection to wait on for readability, or nil
// when the connection is not plain TCP as accepted (TLS, or a PROXY-header
// reader that may hold bytes already read).
func (c *conn) idleWaiter() syscall.RawConn {
	if !idleWaitSupported || c.nc != c.raw {
		return nil
	}
	if c.rawWait == nil {
		tc, ok := c.raw.(*net.TCPConn)
		if !ok {
			return nil
		}
		rc, err := tc.SyscallConn()
		if err != nil {
			return nil
		}
		c.rawWait = rc
		c.idleReadyFn = c.idleReady // once: a method value passed on escapes
	}
	return c.rawWait
}

// waitIdle waits, before a command line is read, until the client has sent
// something (or the read deadline passed, or the connection ended), with
// the buffers given back meanwhile when nothing is buffered and nothing has
// arrived. Errors are those a Read would have returned; the buffers are
// back in any case.
func (c *conn) waitIdle() error {
	if c.br.Buffered() > 0 || c.bw.Buffered() > 0 {
		return nil
	}
	rc := c.idleWaiter()
	if rc == nil {
		return nil
	}
	err := rc.Read(c.idleReadyFn)
	if c.br == nil {
		c.getLineBufs()
	}
	return err
}

// idleReady is waitIdle's callback, called at once and again each time the
// runtime saw the socket become readable: whether something (or EOF, or an
// error) is there is asked without taking it. The runtime only reports
// readability that comes after the wait began, so the first call must look
// for itself. The buffers go back only when there is a wait: a command
// already there (a client that pipelines) needs them at once.
func (c *conn) idleReady(fd uintptr) bool {
	if readable(fd) {
		return true
	}
	if c.br != nil {
		c.putLineBufs()
	}
	return false
}

// getLineBufs gives the connection a line reader and writer, from the
// Server's pools when they have some.
func (c *conn) getLineBufs() {
	if r, ok := c.srv.lineReaders.Get().(*bufio.Reader); ok {
		r.Reset(c.nc)
		c.br = r
	} else {
		c.br = bufio.NewReaderSize(c.nc, lineBufSize)
	}
	if w, ok := c.srv.lineWriters.Get().(*bufio.Writer); ok {
		w.Reset(c.deadlineWriter())
		c.bw = w
	} else {
		c.bw = bufio.NewWriterSize(c.deadlineWriter(), lineBufSize)
	}
}

// putLineBufs gives the (empty) line reader and writer back to the pools.
func (c *conn) putLineBufs() {
	c.br.Reset(nil)
	c.srv.lineReaders.Put(c.br)
	c.bw.Reset(nil)
	c.srv.lineWriters.Put(c.bw)
	c.br, c.bw = nil, nil
}

// loginAside calls Backend.Login on a goroutine of its own (see above) and
// waits for it. A panic there is carried back and raised again here, where
// finish recovers it, with the stack of where it happened.
func (c *conn) loginAside(cred *Credentials) (Session, error) {
	type result struct {
		sess Session
		err  error
		p    *asidePanic
	}
	done := make(chan result, 1)
	go func() {
		var r result
		defer func() {
			if v := recover(); v != nil {
				r.p = &asidePanic{value: v, stack: debug.Stack()}
			}
			done <- r
		}()
		r.sess, r.err = c.cfg.backend.Login(c.ctx, &c.info, cred)
	}()
	r := <-done
	if r.p != nil {
		panic(r.p)
	}
	return r.sess, r.err
}

// asidePanic is a panic of another goroutine, raised again on the
// connection's: value is what was raised, stack where.
type asidePanic struct {
	value any
	stack []byte
}
