package pop3client

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// DotReader reads the body of a multi-line response: the octets as the
// server meant them, line ends included, dot-stuffing undone, up to the
// terminating dot, after which Read returns io.EOF. It holds no more than
// the client's read buffer, however long the message or its lines. It is
// valid until the client's next command.
//
// When the connection ends before the terminating dot, Read fails with
// ErrNoTerminator: what was read is truncated. A strict client (see
// Options.AllowBareLF) fails on a line not ended by CRLF; otherwise such
// lines pass as they came.
type DotReader struct {
	c    *Client
	what string // the command answered, for errors
	p    []byte // the undelivered rest of the current fragment, in c.r's buffer
	bol  bool   // the next fragment starts a line
	last byte   // the last octet read
	err  error  // io.EOF after the terminating dot, or the failure
}

// DotReader returns a reader for the body of the multi-line response whose
// +OK status line was just read (by Cmd or Status).
func (c *Client) DotReader() *DotReader {
	c.dot = DotReader{c: c, what: c.last, bol: true, last: '\n'}
	return &c.dot
}

// fill reads the next fragment into d.p, unless d.p holds one or the body
// has ended.
func (d *DotReader) fill() {
	for len(d.p) == 0 && d.err == nil {
		raw, err := d.c.r.ReadSlice('\n')
		full := errors.Is(err, bufio.ErrBufferFull)
		if err != nil && !full {
			d.err = fmt.Errorf("%s: %w", d.what, ended(err))
			return
		}
		frag := raw
		if d.bol && raw[0] == '.' {
			if !full && (string(raw) == ".\r\n" || d.c.bareLF && string(raw) == ".\n") {
				d.err = io.EOF
				return
			}
			frag = raw[1:]
		}
		if !full && !d.c.bareLF && lastTwo(raw, [2]byte{0, d.last})[0] != '\r' {
			d.err = fmt.Errorf("%s: %w", d.what, errBareLF)
			return
		}
		d.last = raw[len(raw)-1]
		d.bol = !full
		d.p = frag
	}
}

// Read reads the body's next octets.
func (d *DotReader) Read(p []byte) (int, error) {
	d.fill()
	if len(d.p) == 0 {
		return 0, d.err
	}
	n := copy(p, d.p)
	d.p = d.p[n:]
	return n, nil
}

// WriteTo writes the rest of the body to w straight from the client's
// buffer (io.Copy uses it), and returns the octets written.
func (d *DotReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		d.fill()
		if len(d.p) == 0 {
			if d.err == io.EOF {
				return total, nil
			}
			return total, d.err
		}
		n, err := w.Write(d.p)
		total += int64(n)
		d.p = d.p[n:]
		if err != nil {
			return total, err
		}
	}
}

// Close reads and drops the rest of the body, so that the connection can
// go on with the next command.
func (d *DotReader) Close() error {
	_, err := d.WriteTo(io.Discard)
	return err
}

// MultiLine reads the body of the multi-line response whose +OK status
// line was just read: the payload with its CRLFs, dot-stuffing undone. On
// error it returns what came before, too.
func (c *Client) MultiLine() ([]byte, error) {
	return readAll(c.DotReader())
}

func readAll(d *DotReader) ([]byte, error) {
	var buf bytes.Buffer
	_, err := d.WriteTo(&buf)
	return buf.Bytes(), err
}
