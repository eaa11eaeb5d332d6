package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testenv"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/pop3/pop3client"
	"github.com/popbridge/popbridge/uidmap"
	"github.com/popbridge/popbridge/uidmap/boltstore"
)

// importMessages is a mailbox that exercises every matching pass: distinct
// sizes, two neighbours of the same size (only their headers tell them
// apart), a message without Message-ID, and dot-stuffing.
func importMessages() [][]byte {
	return [][]byte{
		[]byte("From: a@example.net\r\nSubject: first\r\nMessage-ID: <1@example.net>\r\n\r\nhello\r\n"),
		[]byte("From: a@example.net\r\nSubject: twin A\r\nMessage-ID: <2a@example.net>\r\n\r\nsame size\r\n"),
		[]byte("From: a@example.net\r\nSubject: twin B\r\nMessage-ID: <2b@example.net>\r\n\r\nsame size\r\n"),
		[]byte("From: b@example.net\r\nSubject: no message-id here\r\n\r\n.leading dot\r\n..two\r\n"),
		[]byte("From: c@example.net\r\nSubject: last one\r\nMessage-ID: <5@example.net>\r\n\r\nbye, a longer body\r\n"),
	}
}

// impEnv is a Dovecot, a user with mail, and a popbridge configuration
// (not running) in front of it.
type impEnv struct {
	dv      *dovecot.Server
	user    string
	cfgPath string
	state   string
	addr    string // popbridge's POP3 listener, once serve runs
}

func newImpEnv(t *testing.T, opts ...dovecot.Option) *impEnv {
	t.Helper()
	dv := dovecot.Start(t, opts...)
	e := &impEnv{dv: dv, user: dovecot.User(t), addr: freeAddr(t)}
	dir := t.TempDir()
	e.state = filepath.Join(dir, "state.db")
	e.cfgPath = filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf("listeners:\n  - address: %q\nupstream:\n  address: %q\n  tls: none\nstate:\n  path: %q\nlog:\n  level: warn\nshutdown_grace: 1s\n",
		e.addr, dv.IMAPAddr, e.state)
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, m := range importMessages() {
		dv.Append(t, e.user, "INBOX", m)
	}
	return e
}

// importRun runs import-uidl for the user with the password on stdin.
func (e *impEnv) importRun(args ...string) (stdout string, err error) {
	return e.importStdin(e.dv.Password+"\n", args...)
}

func (e *impEnv) importStdin(stdin string, args ...string) (stdout string, err error) {
	var out, errOut bytes.Buffer
	args = append([]string{"-config", e.cfgPath, "-user", e.user}, args...)
	err = cmdImportUIDL(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	if strings.Contains(out.String()+errOut.String(), e.dv.Password) || (err != nil && strings.Contains(err.Error(), e.dv.Password)) {
		return "", fmt.Errorf("the password was printed: %v\n%s%s", err, out.String(), errOut.String())
	}
	if err != nil {
		err = fmt.Errorf("%w\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
	}
	return out.String(), err
}

func (e *impEnv) mustImport(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.importRun(args...)
	if err != nil {
		t.Fatalf("import-uidl %v: %v", args, err)
	}
	t.Logf("import-uidl %v:\n%s", args, out)
	return out
}

// serve starts `popbridge serve` on the configuration until the test ends.
func (e *impEnv) serve(t *testing.T) {
	t.Helper()
	_, stderr := startRun(t, "serve", "-config", e.cfgPath)
	waitListening(t, e.addr, stderr)
}

// popUIDLs lists UIDLs through a POP3 server (Dovecot's or popbridge's);
// with retrieve, it downloads every message too, as a client would.
func popUIDLs(t *testing.T, addr, user, password string, retrieve bool) []string {
	t.Helper()
	var out []string
	testenv.POP3Session(t, addr, user, password, func(c *pop3client.Client) {
		list, err := c.Listing("UIDL")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range list {
			out = append(out, e.Value)
			if retrieve {
				if _, err := c.Retr(e.N); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
	return out
}

func wantLine(t *testing.T, out, pattern string) {
	t.Helper()
	if !regexp.MustCompile(`(?m)^` + pattern).MatchString(out) {
		t.Fatalf("output lacks a line like %q:\n%s", pattern, out)
	}
}

// loadState returns the stored maildrop of the user.
func (e *impEnv) loadState(t *testing.T) *uidmap.Maildrop {
	t.Helper()
	s, err := boltstore.Open(e.state)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d, err := s.Load(context.Background(), uidmap.Key{Upstream: e.dv.IMAPAddr, User: e.user, Mailbox: "INBOX"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestImportUIDLFromDovecotPOP3: the old server is Dovecot's own POP3 (over
// STLS) with another UIDL format than popbridge's. After import-uidl,
// popbridge lists exactly Dovecot's UIDLs: a client downloads nothing again.
func TestImportUIDLFromDovecotPOP3(t *testing.T) {
	e := newImpEnv(t, dovecot.WithPOP3(), dovecot.WithTLS(), dovecot.WithConfig("pop3_uidl_format = %v-%u"))
	old := popUIDLs(t, e.dv.POP3Addr, e.user, e.dv.Password, true)
	if len(old) != 5 || !strings.Contains(old[0], "-") {
		t.Fatalf("Dovecot's POP3 UIDLs %v: want 5 in %%v-%%u", old)
	}
	pop3Args := []string{"-pop3", e.dv.POP3Addr, "-pop3-tls", "starttls", "-pop3-ca", e.dv.CAFile}

	out := e.mustImport(t, append(pop3Args, "-dry-run")...)
	wantLine(t, out, `matched: 5 \(size-order 3, header\+size 2\)`)
	wantLine(t, out, `dry run: nothing written`)
	if d := e.loadState(t); len(d.Records) != 0 {
		t.Fatalf("-dry-run stored %d records", len(d.Records))
	}

	out = e.mustImport(t, pop3Args...)
	wantLine(t, out, `matched: 5 `)
	wantLine(t, out, `unmatched old messages: 0`)
	wantLine(t, out, `unmatched IMAP messages: 0`)
	wantLine(t, out, `written: 5 UIDLs`)
	d := e.loadState(t)
	r1, _ := d.Find(1)
	r4, _ := d.Find(4)
	if len(d.Records) != 5 || r4.FP.HeaderHash == "" || r1.FP.MessageID == "" {
		t.Fatalf("stored %+v: want 5 records with fingerprints", d)
	}

	// The old server's own password, from the second line: a wrong one is
	// a clear error, and nothing is written.
	_, err := e.importStdin(e.dv.Password+"\nwrong\n", append(pop3Args, "-pop3-own-password", "-force")...)
	if err == nil || !strings.Contains(err.Error(), "login as "+e.user) {
		t.Fatalf("wrong POP3 password: %v", err)
	}

	// Again: refused, existing state is not overwritten without -force.
	if _, err := e.importRun(pop3Args...); !errors.Is(err, uidmap.ErrStateExists) || !strings.Contains(err.Error(), "-force") {
		t.Fatalf("second import: %v; want a refusal naming -force", err)
	}
	wantLine(t, e.mustImport(t, append(pop3Args, "-force")...), `written: 5 UIDLs to .*, replacing 5 stored`)

	e.serve(t)
	if got := popUIDLs(t, e.addr, e.user, e.dv.Password, false); !reflect.DeepEqual(got, old) {
		t.Fatalf("popbridge lists %v, Dovecot's POP3 listed %v", got, old)
	}
	// A message that arrives now is new on both.
	e.dv.Append(t, e.user, "INBOX", []byte("Subject: later\r\n\r\nnew\r\n"))
	got := popUIDLs(t, e.addr, e.user, e.dv.Password, false)
	if len(got) != 6 || !reflect.DeepEqual(got[:5], old) || slicesContains(old, got[5]) {
		t.Fatalf("with a new message popbridge lists %v (old %v)", got, old)
	}

	// While popbridge runs, the state file is its own.
	_, err = e.importRun(append(pop3Args, "-force")...)
	if !errors.Is(err, boltstore.ErrBusy) || !strings.Contains(err.Error(), "stop popbridge") {
		t.Fatalf("import while serve runs: %v; want ErrBusy and the advice to stop popbridge", err)
	}
	out = e.mustImport(t, append(pop3Args, "-dry-run")...)
	wantLine(t, out, `dry run: nothing written \(state .* is in use by a running popbridge`)
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestImportUIDLFromDovecotUIDList reads the maildir's dovecot-uidlist:
// UIDLs Dovecot saved (pop3_save_uidl) are taken as they are, the others
// made with -uidl-format. In the same maildir, UIDs match; after the
// mailbox got another UIDVALIDITY, sizes and headers (read from the
// maildir's files) do.
func TestImportUIDLFromDovecotUIDList(t *testing.T) {
	e := newImpEnv(t, dovecot.WithPOP3(), dovecot.WithConfig("pop3_uidl_format = %v-%u\npop3_save_uidl = yes"))
	popUIDLs(t, e.dv.POP3Addr, e.user, e.dv.Password, false) // Dovecot saves these five
	e.dv.Append(t, e.user, "INBOX", []byte("From: d@example.net\r\nSubject: after\r\n\r\nnot listed yet\r\n"))
	uidlist := filepath.Join(e.dv.Maildir(e.user), "dovecot-uidlist")
	data, err := os.ReadFile(uidlist)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s:\n%s", uidlist, data)
	if n := strings.Count(string(data), " P"); n != 5 {
		t.Fatalf("%d saved UIDLs in the uidlist, want 5 (pop3_save_uidl)", n)
	}
	old := popUIDLs(t, e.dv.POP3Addr, e.user, e.dv.Password, false)

	t.Run("SameMaildir", func(t *testing.T) {
		out := e.mustImport(t, "-dovecot-uidlist", uidlist, "-uidl-format", "%v-%u")
		wantLine(t, out, `old server: dovecot-uidlist .*, 6 messages, UIDVALIDITY \d+ \(the same mailbox`)
		wantLine(t, out, `matched: 6 \(uid 6\)`)
	})

	t.Run("OtherUIDValidity", func(t *testing.T) {
		// The uidlist as it was, next to the maildir's files; then the
		// mailbox gets a new UIDVALIDITY (a re-created mailbox, a move).
		dir := t.TempDir()
		copyList := filepath.Join(dir, "dovecot-uidlist")
		if err := os.WriteFile(copyList, data, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, sub := range []string{"cur", "new"} {
			if err := os.Symlink(filepath.Join(e.dv.Maildir(e.user), sub), filepath.Join(dir, sub)); err != nil {
				t.Fatal(err)
			}
		}
		var validity uint32
		fmt.Sscanf(strings.Fields(string(data))[1], "V%d", &validity)
		e.dv.Doveadm(t, "mailbox", "update", "-u", e.user, "--uid-validity", fmt.Sprint(validity+100), "INBOX")

		out := e.mustImport(t, "-dovecot-uidlist", copyList, "-uidl-format", "%v-%u", "-force")
		wantLine(t, out, `matched: 6 \(size-order 4, header\+size 2\)`)
		if d := e.loadState(t); d.UIDValidity != validity+100 {
			t.Fatalf("stored under UIDVALIDITY %d, want the upstream's %d", d.UIDValidity, validity+100)
		}
	})

	// Both imports serve exactly what Dovecot's POP3 served before.
	e.serve(t)
	if got := popUIDLs(t, e.addr, e.user, e.dv.Password, false); !reflect.DeepEqual(got, old) {
		t.Fatalf("popbridge lists %v, Dovecot's POP3 listed %v", got, old)
	}
}

// TestImportNotNeededWithDovecotDefaultFormat: moving from Dovecot's own
// POP3 with its default pop3_uidl_format (%08Xu%08Xv) on the same maildir
// needs no import: popbridge's default names every message the same.
func TestImportNotNeededWithDovecotDefaultFormat(t *testing.T) {
	e := newImpEnv(t, dovecot.WithPOP3())
	old := popUIDLs(t, e.dv.POP3Addr, e.user, e.dv.Password, true) // a client downloaded it all
	e.serve(t)
	if got := popUIDLs(t, e.addr, e.user, e.dv.Password, false); !reflect.DeepEqual(got, old) {
		t.Fatalf("popbridge lists %v, Dovecot's POP3 listed %v", got, old)
	}
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(old[0]) {
		t.Fatalf("Dovecot's default UIDL %q is not %%08Xu%%08Xv", old[0])
	}
}

func TestImportUIDLUsage(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("upstream:\n  address: 127.0.0.1:1\n  tls: none\nstate:\n  path: "+filepath.Join(t.TempDir(), "s.db")+"\n"), 0o600)
	for _, args := range [][]string{
		{"-config", cfg},               // no -user
		{"-config", cfg, "-user", "u"}, // no source
		{"-config", cfg, "-user", "u", "-pop3", "h:110", "-dovecot-uidlist", "f"}, // both
		{"-config", cfg, "-user", "u", "-pop3", "h:110", "-pop3-tls", "ssl"},
		{"-config", cfg, "-user", "u", "-dovecot-uidlist", "f", "-pop3-user", "x"},
		{"-config", cfg, "-user", "u", "-pop3", "nohost"},
		{"-config", cfg, "-user", "u", "-pop3", "h:110", "secret"}, // a password is never an argument
	} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), append([]string{"import-uidl"}, args...), &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d, want 2: %s", args, code, errOut.String())
		}
		if !strings.Contains(errOut.String(), "usage: popbridge import-uidl") {
			t.Errorf("%v: no usage: %s", args, errOut.String())
		}
	}
	var errOut bytes.Buffer
	if err := cmdImportUIDL(context.Background(), []string{"-h"}, strings.NewReader(""), &bytes.Buffer{}, &errOut); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	for _, f := range []string{"-pop3-tls", "-pop3-user", "-dovecot-uidlist", "-uidl-format", "-dry-run", "-force", "standard input"} {
		if !strings.Contains(errOut.String(), f) {
			t.Errorf("usage does not document %s:\n%s", f, errOut.String())
		}
	}
	var out bytes.Buffer
	run(context.Background(), []string{"help"}, &out, &out)
	if !strings.Contains(out.String(), "import-uidl") {
		t.Errorf("popbridge help does not list import-uidl:\n%s", out.String())
	}

	// No password on stdin: a clear error before any connection.
	err := cmdImportUIDL(context.Background(), []string{"-config", cfg, "-user", "u", "-pop3", "127.0.0.1:1", "-pop3-tls", "none"},
		strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "standard input") {
		t.Fatalf("empty stdin: %v", err)
	}
}
