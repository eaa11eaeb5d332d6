package main

// Reading a Dovecot maildir's dovecot-uidlist for import-uidl.
//
// Version 3 (Dovecot 1.1 and later):
//
//	3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1
//	25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394:2,
//	25017 W2481 P000061a96b0719a7 :1276533073.M242911P3632.kurkku:2,F
//
// The header's fields come in any order (V UIDVALIDITY, N next UID, G
// mailbox GUID). Each record is a UID, extension fields (a key letter and a
// value: P the POP3 UIDL saved by pop3_save_uidl or a migration, W the
// virtual size, i.e. RFC822.SIZE, S the physical size, O the POP3 order, G
// the GUID), then ":" and the last known file name. Version 1 (Courier's
// courierimapuiddb) is "1 UIDVALIDITY NEXTUID", then "UID FILENAME".
// Expunged messages may linger in the file until Dovecot rewrites it.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/popbridge/popbridge/imapupstream"
)

// uidlistEntry is one record of a dovecot-uidlist.
type uidlistEntry struct {
	UID      uint32
	POP3UIDL string // the P extension; "" when absent
	VSize    int64  // RFC822.SIZE from W, or W= in the file name; -1 when unknown
	Filename string // last known file name (flags may have changed since)
}

// dovecotUIDList is a parsed dovecot-uidlist.
type dovecotUIDList struct {
	Version     int
	UIDValidity uint32
	NextUID     uint32
	Entries     []uidlistEntry // in file order (ascending UIDs)
}

// parseDovecotUIDList reads a dovecot-uidlist. name is for error messages.
func parseDovecotUIDList(r io.Reader, name string) (*dovecotUIDList, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	bad := func(line int, format string, args ...any) error {
		return fmt.Errorf("%s line %d: %s", name, line, fmt.Sprintf(format, args...))
	}
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return nil, fmt.Errorf("%s: empty file, not a dovecot-uidlist", name)
	}
	head := strings.Fields(sc.Text())
	if len(head) == 0 {
		return nil, bad(1, "empty header")
	}
	l := &dovecotUIDList{}
	switch head[0] {
	case "3":
		l.Version = 3
		for _, f := range head[1:] {
			if len(f) < 2 {
				continue
			}
			switch f[0] {
			case 'V':
				v, err := strconv.ParseUint(f[1:], 10, 32)
				if err != nil {
					return nil, bad(1, "bad UIDVALIDITY %q", f)
				}
				l.UIDValidity = uint32(v)
			case 'N':
				if v, err := strconv.ParseUint(f[1:], 10, 32); err == nil {
					l.NextUID = uint32(v)
				}
			}
		}
	case "1":
		l.Version = 1
		if len(head) < 3 {
			return nil, bad(1, "version 1 header needs UIDVALIDITY and next UID")
		}
		v, err := strconv.ParseUint(head[1], 10, 32)
		if err != nil {
			return nil, bad(1, "bad UIDVALIDITY %q", head[1])
		}
		l.UIDValidity = uint32(v)
		if n, err := strconv.ParseUint(head[2], 10, 32); err == nil {
			l.NextUID = uint32(n)
		}
	default:
		return nil, bad(1, "unknown dovecot-uidlist version %q (want 3, or 1)", head[0])
	}
	if l.UIDValidity == 0 {
		return nil, bad(1, "no UIDVALIDITY in the header")
	}

	seen := make(map[uint32]int)
	for n := 2; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		var e uidlistEntry
		var uidStr, rest string
		if l.Version == 1 {
			uidStr, e.Filename, _ = strings.Cut(line, " ")
		} else {
			var ok bool
			if uidStr, rest, ok = strings.Cut(line, " "); !ok {
				return nil, bad(n, "no file name")
			}
			exts, file, ok := strings.Cut(rest, ":")
			if !ok {
				return nil, bad(n, "no ':' before the file name")
			}
			e.Filename = file
			e.VSize = -1
			for _, f := range strings.Fields(exts) {
				switch f[0] {
				case 'P':
					e.POP3UIDL = f[1:]
				case 'W':
					if v, err := strconv.ParseInt(f[1:], 10, 64); err == nil {
						e.VSize = v
					}
				}
			}
		}
		uid, err := strconv.ParseUint(uidStr, 10, 32)
		if err != nil || uid == 0 {
			return nil, bad(n, "bad UID %q", uidStr)
		}
		e.UID = uint32(uid)
		if e.Filename == "" {
			return nil, bad(n, "empty file name")
		}
		if l.Version == 1 {
			e.VSize = -1
		}
		if e.VSize < 0 {
			e.VSize = filenameField(e.Filename, "W")
		}
		if i, dup := seen[e.UID]; dup {
			l.Entries[i] = e // appended later: the newer record wins
			continue
		}
		seen[e.UID] = len(l.Entries)
		l.Entries = append(l.Entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return l, nil
}

// filenameField returns the value of ",KEY=value" in a maildir base name
// (before ":2,"), or -1.
func filenameField(name, key string) int64 {
	base, _, _ := strings.Cut(name, ":")
	for _, f := range strings.Split(base, ",")[1:] {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				return n
			}
		}
	}
	return -1
}

// maildirFiles finds the current files of a maildir's messages: a file's
// flags (after ':') change its name, its base name stays.
type maildirFiles struct {
	dir   string
	paths map[string]string // base name → path; nil until first used
}

func (m *maildirFiles) find(filename string) string {
	if m.paths == nil {
		m.paths = make(map[string]string)
		for _, sub := range []string{"new", "cur"} {
			ents, err := os.ReadDir(filepath.Join(m.dir, sub))
			if err != nil {
				continue
			}
			for _, e := range ents {
				base, _, _ := strings.Cut(e.Name(), ":")
				m.paths[base] = filepath.Join(m.dir, sub, e.Name())
			}
		}
	}
	base, _, _ := strings.Cut(filename, ":")
	return m.paths[base]
}

// readMaildirHeader returns the header of the message file at path, up to
// and including the blank line, at most imapupstream.MaxHeaderSize octets.
func readMaildirHeader(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReader(io.LimitReader(f, imapupstream.MaxHeaderSize))
	var out bytes.Buffer
	partial := false // the last fragment did not end its line
	for {
		line, err := r.ReadSlice('\n')
		out.Write(line)
		if errors.Is(err, bufio.ErrBufferFull) {
			partial = true
			continue
		}
		if err != nil || (!partial && len(bytes.TrimRight(line, "\r\n")) == 0) {
			return out.Bytes(), nil
		}
		partial = false
	}
}

// maildirVSize is a message file's RFC822.SIZE: its size with every bare LF
// counted as CRLF.
func maildirVSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return -1, err
	}
	defer f.Close()
	var n int64
	var prev byte
	buf := make([]byte, 32<<10)
	for {
		k, err := f.Read(buf)
		for _, b := range buf[:k] {
			if b == '\n' && prev != '\r' {
				n++
			}
			n++
			prev = b
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return -1, err
		}
	}
}
