package pop3

import (
	"bufio"
	"errors"
	"io"

	"go.uber.org/zap"
)

// sendBody answers RETR or TOP from r: "+OK status", the body through the
// dot-stuffing writer, then "." (into the buffer; the caller flushes). It
// closes r and returns the octets read and whether the response is whole.
// Until a first read succeeds (a clean EOF at most) nothing is sent, and a
// failure is a plain -ERR, even if that read returned octets; a failure
// after that ends the connection without the terminating ".", so that no
// client takes a truncated message for a complete one.
func (c *conn) sendBody(cmd string, n int, status string, r io.ReadCloser) (sent int64, complete bool) {
	defer func() {
		if c.werr != nil {
			// The client is gone, so the connection has ended: its
			// context ends now (as documented), before r.Close, so that
			// the backend gives up the rest of the message instead of
			// reading it to the end for nobody while it holds the
			// maildrop.
			c.cancel()
		}
		if err := r.Close(); err != nil {
			c.log.Debug("closing message reader failed", zap.String("cmd", cmd), zap.Int("msg", n), zap.Error(err))
		}
	}()
	bp := c.srv.getReadBuf()
	defer c.srv.readBufs.Put(bp)
	buf := *bp

	nr, rerr := readSome(r, buf)
	if rerr != nil && rerr != io.EOF {
		c.backendFailed(cmd, n, rerr)
		return 0, false
	}

	defer c.restoreWriter(c.useBodyWriter())
	c.ok(status)
	c.streaming = true
	c.dw.reset(c.bw)
	c.dw.noNULs = c.cfg.noNULs
	for {
		if nr > 0 {
			sent += int64(nr)
			if _, err := c.dw.Write(buf[:nr]); err != nil {
				c.werr = err
				return sent, false
			}
		}
		if rerr != nil {
			break
		}
		nr, rerr = readSome(r, buf)
	}
	if rerr != io.EOF {
		c.log.Warn("message stream failed part-way; closing the connection without the terminating dot",
			zap.String("cmd", cmd), zap.Int("msg", n), zap.Int64("sent", sent), zap.Error(rerr))
		c.setEnd(EndError)
		c.closing = true
		c.cmdOK = false
		return sent, false
	}
	if err := c.dw.Close(); err != nil {
		c.werr = err
		return sent, false
	}
	c.streaming = false
	c.cmdOK = true
	return sent, true
}

// Buffers for a message body, pooled and taken for the length of a body
// only. A connection's own writer is small, as it lives as long as the
// connection, idle or not; a message written through it would leave in as
// many small writes, each a system call with its own write deadline. Reads
// of up to 128 KiB take what the backend's connection has in one system
// call (bufio.Reader, go-imap's included, reads that much straight into
// them), and a typical message (most are under 100 KB) then leaves in one
// write, which wakes the client once: against 64 KiB buffers, popbench's
// retr of 2,000 messages of 100 KB went from 0.91× to 0.99× the IMAP
// ceiling in the same run. The cost is 256 KiB a session while it sends a
// message, none while it idles.
const (
	bodyWriterSize = 128 << 10
	bodyReadSize   = 128 << 10
)

func (s *Server) getBodyWriter() *bufio.Writer {
	if w, ok := s.bodyWriters.Get().(*bufio.Writer); ok {
		return w
	}
	return bufio.NewWriterSize(nil, bodyWriterSize)
}

func (s *Server) getReadBuf() *[]byte {
	if b, ok := s.readBufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, bodyReadSize)
	return &b
}

// useBodyWriter stacks a pooled body writer on c.bw, until restoreWriter.
// The callers flush c.bw before they wait on the backend, so it is empty
// and every flush of the body writer goes straight through it to the
// connection.
func (c *conn) useBodyWriter() (saved, big *bufio.Writer) {
	saved = c.bw
	big = c.srv.getBodyWriter()
	big.Reset(saved)
	c.bw = big
	return saved, big
}

// restoreWriter puts c.bw back; what the body writer still holds goes into
// it, to be flushed as usual (unless writing has failed).
func (c *conn) restoreWriter(saved, big *bufio.Writer) {
	c.bw = saved
	if c.werr == nil {
		if err := big.Flush(); err != nil {
			c.werr = err
		}
	}
	big.Reset(nil)
	c.srv.bodyWriters.Put(big)
}

// readSome reads into buf until it gets at least one byte or an error; a
// reader that keeps returning nothing is an error, as in bufio.
func readSome(r io.Reader, buf []byte) (int, error) {
	for range 100 {
		n, err := r.Read(buf)
		if n > 0 || err != nil {
			return n, err
		}
	}
	return 0, io.ErrNoProgress
}

// backendFailed answers a failed RETR or TOP with the backend's error code.
// The session goes on unless the error asks to close.
func (c *conn) backendFailed(cmd string, n int, err error) {
	e := asError(err)
	if errors.Is(err, ErrNoSuchMessage) {
		c.log.Info("message gone upstream", zap.String("cmd", cmd), zap.Int("msg", n))
	} else {
		c.log.Warn("backend failed", zap.String("cmd", cmd), zap.Int("msg", n), zap.Error(err))
	}
	c.failError(e)
}
