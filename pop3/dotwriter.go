package pop3

import (
	"bufio"
	"bytes"
)

// dotWriter writes a message as the body of a multi-line response (RFC 1939
// section 3), streaming into a bufio.Writer without allocating:
//
//   - a line that begins with "." gets another "." in front;
//   - a bare LF becomes CRLF; CRLFs pass through, also split across writes;
//   - a lone CR is data (only LF ends a line), so it can neither start a line
//     nor fake the terminator, and the octets stay those the backend counted;
//   - Close ends a non-empty message that lacks a final line ending with
//     CRLF (after a trailing lone CR too), then writes ".\r\n";
//   - with noNULs (Server.OutlookNoNULs) each NUL is sent as 0x80, one octet
//     for one, as Dovecot's outlook-no-nuls does.
type dotWriter struct {
	w      *bufio.Writer
	bol    bool // the next byte starts a line
	cr     bool // the last byte written was a CR, so an LF now completes CRLF
	noNULs bool // send NUL as 0x80; set after reset
}

// reset prepares d for a new message written to w.
func (d *dotWriter) reset(w *bufio.Writer) {
	*d = dotWriter{w: w, bol: true}
}

// Write stuffs p and writes it. On error it returns how much of p was
// consumed; the bufio.Writer keeps the error.
//
// Lines that need no change (CRLF-terminated, not starting with ".") are
// not written one by one: runs of them go to the bufio.Writer in one
// copy, so a 100 KB message of 76-octet lines is a few writes, not 1,300.
func (d *dotWriter) Write(p []byte) (int, error) {
	total := len(p)
	// p[:run] is checked and waits to be written as it is.
	run := 0
	for run < len(p) {
		if d.bol && p[run] == '.' {
			if err := d.put(p[:run]); err != nil {
				return total - len(p), err
			}
			p = p[run:]
			run = 0
			if err := d.w.WriteByte('.'); err != nil {
				return total - len(p), err
			}
		}
		i := bytes.IndexByte(p[run:], '\n')
		if i < 0 {
			// No line end in the rest: it is the middle of a line.
			d.bol = false
			d.cr = p[len(p)-1] == '\r'
			run = len(p)
			break
		}
		i += run
		cr := d.cr // the byte before the LF came in an earlier write
		if i > 0 {
			cr = p[i-1] == '\r'
		}
		if cr {
			run = i + 1 // CRLF: the line stays as it is
		} else {
			// A bare LF becomes CRLF.
			if err := d.put(p[:i]); err != nil {
				return total - len(p), err
			}
			if _, err := d.w.WriteString("\r\n"); err != nil {
				return total - len(p), err
			}
			p = p[i+1:]
			run = 0
		}
		d.bol, d.cr = true, false
	}
	if err := d.put(p[:run]); err != nil {
		return total - len(p), err
	}
	return total, nil
}

// put writes a piece of a line, turning NULs into 0x80 with noNULs.
func (d *dotWriter) put(p []byte) error {
	if !d.noNULs {
		_, err := d.w.Write(p)
		return err
	}
	for {
		i := bytes.IndexByte(p, 0)
		if i < 0 {
			_, err := d.w.Write(p)
			return err
		}
		if _, err := d.w.Write(p[:i]); err != nil {
			return err
		}
		if err := d.w.WriteByte(0x80); err != nil {
			return err
		}
		p = p[i+1:]
	}
}

// Close completes the last line if needed and writes the terminator. It
// does not flush.
func (d *dotWriter) Close() error {
	if !d.bol {
		if _, err := d.w.WriteString("\r\n"); err != nil {
			return err
		}
	}
	_, err := d.w.WriteString(".\r\n")
	d.bol, d.cr = true, false
	return err
}
