package maildir

// Reading a Dovecot maildir's dovecot-uidlist.
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
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/popbridge/popbridge/uidmap"
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

// Source reads the dovecot-uidlist at path. A record's UIDL is its saved P
// field, or what format makes of its UID and the file's UIDVALIDITY.
// Sizes and headers come from the maildir around the file when the records
// do not carry them (only needed when the upstream is another mailbox).
func Source(path string, format uidmap.Format) (uidmap.ImportSource, error) {
	fh, err := os.Open(path)
	if err != nil {
		return uidmap.ImportSource{}, err
	}
	l, err := parseDovecotUIDList(fh, path)
	fh.Close()
	if err != nil {
		return uidmap.ImportSource{}, err
	}
	files := &maildirFiles{dir: filepath.Dir(path)}
	src := uidmap.ImportSource{UIDValidity: l.UIDValidity, Messages: make([]uidmap.OldMessage, len(l.Entries))}
	contentFormat := false
	probe := func(mid string) string { return format.UIDL(1, 1, &uidmap.Identity{MessageID: mid}) }
	if probe("<a@example>") != probe("<b@example>") {
		contentFormat = true // %m: the old Dovecot's hash, not ours
	}
	for i, e := range l.Entries {
		u := e.POP3UIDL
		if u == "" {
			if contentFormat {
				return src, fmt.Errorf("%s: UID %d has no saved UIDL, and -uidl-format %%m needs the message's own hash, which only the old server can give: import from it with -pop3", path, e.UID)
			}
			u = format.UIDL(l.UIDValidity, e.UID, nil)
		}
		size := e.VSize
		if size < 0 {
			if p := files.find(e.Filename); p != "" {
				size, _ = maildirVSize(p)
			}
		}
		src.Messages[i] = uidmap.OldMessage{UIDL: u, Size: size, UID: e.UID}
	}
	src.HeaderHashes = func(_ context.Context, idx []int) (map[int]string, error) {
		out := make(map[int]string, len(idx))
		for _, i := range idx {
			if p := files.find(l.Entries[i].Filename); p != "" {
				if h, err := readMaildirHeader(p); err == nil {
					out[i] = uidmap.HeaderHash(h)
				}
			}
		}
		return out, nil
	}
	return src, nil
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
