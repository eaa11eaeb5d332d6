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
func (d *dotWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if d.bol && p[0] == '.' {
			if err := d.w.WriteByte('.'); err != nil {
				return total - len(p), err
			}
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			// No line end in p: all of it is the middle of a line.
			if err := d.put(p); err != nil {
				return total - len(p), err
			}
			d.bol = false
			d.cr = p[len(p)-1] == '\r'
			return total, nil
		}
		if i > 0 {
			if err := d.put(p[:i]); err != nil {
				return total - len(p), err
			}
			d.cr = p[i-1] == '\r'
		}
		// At i == 0 the byte before the LF came in an earlier write,
		// which d.cr remembers.
		var err error
		if d.cr {
			err = d.w.WriteByte('\n')
		} else {
			_, err = d.w.WriteString("\r\n")
		}
		if err != nil {
			return total - len(p), err
		}
		d.bol, d.cr = true, false
		p = p[i+1:]
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
