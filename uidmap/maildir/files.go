package maildir

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/popbridge/popbridge/imapupstream"
)

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
