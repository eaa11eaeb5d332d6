package main

// The real-client matrix: fetchmail, getmail6, mpop, curl and Python's
// poplib, each in leave-on-server mode, over a plain, a starttls and an
// implicit TLS listener of one `popbridge serve` in front of a real Dovecot.
// For every client and listener:
//
//  1. the first run downloads every message, octet for octet what IMAP
//     BODY[] holds (plus the CRLF RETR adds where a message lacks a final
//     one), after the documented, minimal undoing of what the client does
//     to mail when it stores it (see the comment on each client's type);
//  2. the second run downloads nothing;
//  3. after three messages are APPENDed over IMAP, the third run downloads
//     exactly those three.
//
// A tap in front of the listener records what the client sends, proving that
// it really negotiated STLS or implicit TLS (and never sent the password in
// the clear there). The clients' own UIDL stores must hold popbridge's UIDLs.
//
// What a client cannot do with its Debian 12 version is listed in its
// unsupported map, and the subtest is skipped saying why.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/internal/testenv/e2e"
)

// trapMessage builds a message with CRLF line ends. It has no Return-Path
// or Sender header: getmail would move those (see getmail).
func trapMessage(subject, extraHeaders, body string) []byte {
	s := fmt.Sprintf("From: Sender <sender@example.org>\nTo: rcpt@example.org\nSubject: %s\nMessage-ID: <%s@clients.test>\n%s\n%s",
		subject, strings.ReplaceAll(subject, " ", "."), extraHeaders, body)
	return []byte(strings.ReplaceAll(s, "\n", "\r\n"))
}

// initialMessages are framing traps that bridges and clients have tripped on.
func initialMessages() [][]byte {
	big := strings.Repeat(strings.Repeat("y", 74)+"\n", 1<<20/75) // ~1 MB
	// 8-bit UTF-8 in the body and, unencoded (RFC 6532), in a header field.
	utf8Headers := "X-Greeting: Grüße aus Köln\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n"
	return [][]byte{
		trapMessage("plain", "", "Hello over POP3.\n"),
		// A line that is only ".", lines starting with ".." and ".".
		trapMessage("dots", "", "before\n.\n..two dots\n.one dot\n...\n. \nafter\n"),
		trapMessage("utf8", utf8Headers, "Grüße aus München, 日本語, Ærøskøbing.\n"),
		// No final CRLF: RETR adds one.
		bytes.TrimSuffix(trapMessage("no final newline", "", "last line without CRLF\n"), []byte("\r\n")),
		trapMessage("big", "", big),
	}
}

// laterMessages are APPENDed before the third run.
func laterMessages() [][]byte {
	return [][]byte{
		trapMessage("later one", "", "arrived after the first runs\n"),
		// Ends with a line that is only "." (dot-stuffed to "..").
		trapMessage("later dots", "", "..\n.\n"),
		// Ends with "." and no CRLF: RETR must send "..\r\n.\r\n" at the end.
		bytes.TrimSuffix(trapMessage("later dot no newline", "", "the next line is a dot\n.\n"), []byte("\r\n")),
	}
}

// clientAccount is what a client needs to reach its maildrop.
type clientAccount struct {
	Mode           string // modePlain, modeSTLS, modeImplicit
	Host, Port     string
	User, Password string
	CAFile         string
	Dir            string // the client's own HOME and configuration directory
}

// popClient is one configured client.
type popClient interface {
	// fetch runs the client once and returns the messages it delivered in
	// this run, normalised back to the octets of a RETR response.
	fetch(t *testing.T) [][]byte
	// uidlStore is the file where the client remembers the UIDLs it has
	// seen, "" if it keeps none (curl: the test keeps them).
	uidlStore() string
}

type clientKind struct {
	name    string
	command string // the program requireCommand looks for
	// unsupported names the listener kinds this client's Debian version
	// cannot use, and why.
	unsupported map[string]string
	setup       func(t *testing.T, a clientAccount) popClient
}

var clientKinds = []clientKind{
	{name: "fetchmail", command: "fetchmail", setup: newFetchmail},
	{name: "getmail", command: "getmail", setup: newGetmail, unsupported: map[string]string{
		modeSTLS: "getmail6 6.18 (Debian 12) cannot do STLS: its POP3 retrievers are SimplePOP3Retriever " +
			"(plain) and SimplePOP3SSLRetriever (implicit TLS) only",
	}},
	{name: "mpop", command: "mpop", setup: newMpop},
	{name: "curl", command: "curl", setup: newCurlClient},
	{name: "poplib", command: "python3", setup: newPoplib},
}

func TestRealClientsLeaveOnServer(t *testing.T) {
	dv := dovecot.Start(t)
	pki := e2e.NewPKI(t)
	srv := startServeAll(t, dv, pki, serveOptions{onDele: "keep"})

	for _, kind := range clientKinds {
		for _, mode := range listenerModes {
			t.Run(kind.name+"/"+mode, func(t *testing.T) {
				t.Parallel()
				requireCommand(t, kind.command)
				if why := kind.unsupported[mode]; why != "" {
					t.Skip(why)
				}
				user := dovecot.User(t)
				for _, m := range initialMessages() {
					dv.Append(t, user, "INBOX", m)
				}
				tp := startTap(t, srv.Addr[mode])
				host, port, _ := net.SplitHostPort(tp.Addr)
				client := kind.setup(t, clientAccount{
					Mode: mode, Host: host, Port: port, User: user, Password: dv.Password,
					CAFile: pki.CAFile, Dir: clientDir(t),
				})
				runLeaveOnServer(t, dv, user, client, func() {
					checkTransport(t, mode, dv.Password, tp.connections())
				})
			})
		}
	}
}

// TestFetchmailDeleteMode: fetchmail without keep, with flush, against
// on_dele: expunge. A first run in keep mode makes fetchmail know the first
// messages; after three more arrive, the delete-mode run deletes the known
// ones unread (flush), fetches and deletes the new ones, and so empties the
// POP3 view and the IMAP INBOX.
func TestFetchmailDeleteMode(t *testing.T) {
	requireCommand(t, "fetchmail")
	dv := dovecot.Start(t)
	pki := e2e.NewPKI(t)
	srv := startServeAll(t, dv, pki, serveOptions{onDele: "expunge"})
	for _, mode := range listenerModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			user := dovecot.User(t)
			for _, m := range initialMessages() {
				dv.Append(t, user, "INBOX", m)
			}
			tp := startTap(t, srv.Addr[mode])
			host, port, _ := net.SplitHostPort(tp.Addr)
			a := clientAccount{Mode: mode, Host: host, Port: port, User: user, Password: dv.Password,
				CAFile: pki.CAFile, Dir: clientDir(t)}

			_, first := imapInbox(t, dv, user)
			compareDeliveries(t, "keep run", newFetchmailWith(t, a, "keep").fetch(t), retrOf(first))
			for _, m := range laterMessages() {
				dv.Append(t, user, "INBOX", m)
			}
			_, all := imapInbox(t, dv, user)
			del := newFetchmailWith(t, a, "no keep\n  flush")
			compareDeliveries(t, "delete run", del.fetch(t), retrOf(all[len(first):]))
			checkTransport(t, mode, dv.Password, tp.connections())

			if _, left := imapInbox(t, dv, user); len(left) != 0 {
				t.Errorf("IMAP INBOX still has %d messages after fetchmail deleted everything", len(left))
			}
			p := e2e.Dial(t, srv.Addr[modePlain], nil, nil)
			p.Login(user, dv.Password)
			if l := p.Cmd("STAT"); l != "+OK 0 0" {
				t.Errorf("POP3 STAT after the delete run: %q, want +OK 0 0", l)
			}
			p.Cmd("QUIT")
			compareDeliveries(t, "run after the delete run", del.fetch(t), nil)
		})
	}
}

// TestListenerCAPA checks CAPA on each listener kind against what the pop3
// package promises: TOP UIDL RESP-CODES PIPELINING AUTH-RESP-CODE always;
// STLS only on a starttls listener before TLS; USER and SASL only where a
// plaintext login is allowed (always over TLS, and from loopback even with
// auth.allow_plaintext: false); none of STLS, USER and SASL after login.
func TestListenerCAPA(t *testing.T) {
	dv := dovecot.Start(t)
	pki := e2e.NewPKI(t)
	user := dovecot.User(t)
	dv.Append(t, user, "INBOX", trapMessage("capa", "", "x\n"))

	base := []string{"TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE"}
	const sasl = "SASL PLAIN LOGIN OAUTHBEARER XOAUTH2" // auth.mechanisms' default
	// EXPIRE NEVER (policy.announce_expire's default) and IMPLEMENTATION
	// end every list.
	const impl = "EXPIRE NEVER | IMPLEMENTATION popbridge"
	capa := func(extra ...string) string {
		return strings.Join(append(append(append([]string(nil), base...), extra...), impl), " | ")
	}
	check := func(t *testing.T, what string, got []string, want string) {
		t.Helper()
		if g := strings.Join(got, " | "); g != want {
			t.Errorf("CAPA %s:\n got %s\nwant %s", what, g, want)
		} else {
			t.Logf("CAPA %s: %s", what, g)
		}
	}
	afterLogin := func(t *testing.T, p *e2e.Conn) {
		t.Helper()
		p.Login(user, dv.Password)
		check(t, "after login", p.Capa(), capa())
		p.Cmd("QUIT")
	}
	refused := func(t *testing.T, p *e2e.Conn, stlsHint bool) {
		t.Helper()
		for _, c := range []string{"USER " + user, "AUTH PLAIN"} {
			l := p.Cmd("%s", c)
			if !strings.HasPrefix(l, "-ERR [AUTH] ") || stlsHint != strings.Contains(l, "STLS") {
				t.Errorf("%s without TLS from a non-loopback address: %q, want -ERR [AUTH] (naming STLS: %t)", c, l, stlsHint)
			}
		}
	}

	// Loopback: plaintext logins are allowed even with allow_plaintext false.
	t.Run("loopback", func(t *testing.T) {
		srv := startServeAll(t, dv, pki, serveOptions{onDele: "keep"})
		t.Run(modePlain, func(t *testing.T) {
			p := e2e.Dial(t, srv.Addr[modePlain], nil, nil)
			check(t, "plain", p.Capa(), capa("USER", sasl))
			if l := p.Cmd("STLS"); !strings.HasPrefix(l, "-ERR") {
				t.Errorf("STLS on a plain listener: %q, want a clear -ERR", l)
			}
			afterLogin(t, p)
		})
		t.Run(modeSTLS, func(t *testing.T) {
			p := e2e.Dial(t, srv.Addr[modeSTLS], nil, nil)
			check(t, "starttls before STLS", p.Capa(), capa("STLS", "USER", sasl))
			p.STLS(pki.TLSConfig())
			check(t, "starttls after STLS", p.Capa(), capa("USER", sasl))
			if l := p.Cmd("STLS"); !strings.HasPrefix(l, "-ERR") {
				t.Errorf("a second STLS: %q, want -ERR", l)
			}
			afterLogin(t, p)
		})
		t.Run(modeImplicit, func(t *testing.T) {
			p := e2e.Dial(t, srv.Addr[modeImplicit], nil, pki.TLSConfig())
			check(t, "implicit", p.Capa(), capa("USER", sasl))
			if l := p.Cmd("STLS"); !strings.HasPrefix(l, "-ERR") {
				t.Errorf("STLS on an implicit TLS listener: %q, want -ERR", l)
			}
			afterLogin(t, p)
		})
	})

	// From a non-loopback address of this machine, allow_plaintext false
	// must hide USER and SASL wherever there is no TLS.
	t.Run("non-loopback", func(t *testing.T) {
		ip := nonLoopbackIP()
		if ip == nil {
			t.Skip("this machine has no non-loopback IPv4 address to connect from")
		}
		srv := startServeAll(t, dv, pki, serveOptions{onDele: "keep", host: ip.String()})
		local := &net.TCPAddr{IP: ip}
		t.Run(modePlain, func(t *testing.T) {
			p := e2e.Dial(t, srv.Addr[modePlain], local, nil)
			if a := p.NC.LocalAddr().(*net.TCPAddr); a.IP.IsLoopback() {
				t.Fatalf("connected from %v", a)
			}
			check(t, "plain", p.Capa(), capa())
			refused(t, p, false)
		})
		t.Run(modeSTLS, func(t *testing.T) {
			p := e2e.Dial(t, srv.Addr[modeSTLS], local, nil)
			check(t, "starttls before STLS", p.Capa(), capa("STLS"))
			refused(t, p, true)
			p.STLS(pki.TLSConfig())
			check(t, "starttls after STLS", p.Capa(), capa("USER", sasl))
			afterLogin(t, p)
		})
		t.Run(modeImplicit, func(t *testing.T) {
			p := e2e.Dial(t, srv.Addr[modeImplicit], local, pki.TLSConfig())
			check(t, "implicit", p.Capa(), capa("USER", sasl))
			afterLogin(t, p)
		})
	})
}

// nonLoopbackIP returns an IPv4 address of an up, non-loopback interface.
func nonLoopbackIP() net.IP {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				return n.IP.To4()
			}
		}
	}
	return nil
}

// runLeaveOnServer is the three runs. checkRun is called after each.
func runLeaveOnServer(t *testing.T, dv *dovecot.Server, user string, client popClient, checkRun func()) {
	t.Helper()
	uidValidity, first := imapInbox(t, dv, user)
	got := client.fetch(t)
	compareDeliveries(t, "first run", got, retrOf(first))
	checkRun()
	checkUIDLStore(t, client, uidValidity, first)
	if t.Failed() {
		return
	}

	got = client.fetch(t)
	compareDeliveries(t, "second run (nothing new)", got, nil)
	checkRun()

	for _, m := range laterMessages() {
		dv.Append(t, user, "INBOX", m)
	}
	_, all := imapInbox(t, dv, user)
	got = client.fetch(t)
	compareDeliveries(t, "third run (three new messages)", got, retrOf(all[len(first):]))
	if len(all) != len(first)+3 {
		t.Errorf("IMAP INBOX has %d messages after 3 APPENDs to %d", len(all), len(first))
	}
	checkRun()
	checkUIDLStore(t, client, uidValidity, all)
}

func retrOf(msgs []imapMsg) [][]byte {
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		out[i] = asRETR(m.Body)
	}
	return out
}

// checkUIDLStore verifies that the client remembers popbridge's UIDL (Dovecot's
// format) of every message.
func checkUIDLStore(t *testing.T, client popClient, uidValidity uint32, msgs []imapMsg) {
	t.Helper()
	path := client.uidlStore()
	if path == "" {
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("the client's UIDL store: %v", err)
		return
	}
	for _, m := range msgs {
		if u := dovecotUIDL(uidValidity, m.UID); !bytes.Contains(data, []byte(u)) {
			t.Errorf("UIDL %s (UID %d) is not in the client's UIDL store %s:\n%s", u, m.UID, path, data)
		}
	}
}

// clientDir is a private directory for one client, traversable by the
// system user mail (getmail delivers as that user: it refuses root), and
// removed when the test ends.
func clientDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "popbridge-client-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runProgram runs a client program in dir with HOME=dir and returns its
// combined output and exit code; a program that cannot start or takes too
// long fails the test.
func runProgram(t *testing.T, dir string, extraEnv []string, name string, args ...string) (string, int) {
	t.Helper()
	return runProgramAs(t, dir, extraEnv, nil, name, args...)
}

// runProgramAs is runProgram as the user and group of cred (nil: this
// process's).
func runProgramAs(t *testing.T, dir string, extraEnv []string, cred *syscall.Credential, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	cmd.Dir = dir
	cmd.Env = clientEnv(dir, extraEnv)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %v timed out: %s", name, args, out)
	}
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s: %v", name, err)
		}
		code = ee.ExitCode()
	}
	return string(out), code
}

// clientEnv is the test's environment with the client's own HOME and none
// of the variables that would point a mail client at the tester's files.
func clientEnv(home string, extra []string) []string {
	drop := map[string]bool{"HOME": true, "USER": true, "LOGNAME": true, "MAIL": true, "MAILDIR": true,
		"FETCHMAILHOME": true, "FETCHMAILUSER": true, "XDG_CONFIG_HOME": true, "LANG": true, "LC_ALL": true}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] {
			env = append(env, kv)
		}
	}
	return append(append(env, "HOME="+home, "LC_ALL=C"), extra...)
}

func writeFile(t *testing.T, path, content string, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
}

// readAndRemove returns the contents of every file in dir and removes them.
func readAndRemove(t *testing.T, dir string) [][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
		os.Remove(p)
	}
	return out
}

// ---- fetchmail 6.4 ----

// fetchmail runs as root here (it warns, and goes on): FETCHMAILHOME and
// HOME point at its own directory (pid file, .fetchids), the rc file is
// 0600 as fetchmail demands, "set no syslog" keeps it on stderr, and "set
// no bouncemail" keeps it from mailing anyone. USER, LOGNAME and
// FETCHMAILUSER are not set (clientEnv), so as root it runs the MDA as the
// user it was started as instead of looking one up. Delivery is through an MDA
// that writes each message to its own file; with "set invisible" (no
// Received: header), "no rewrite" (no address rewriting) and "no stripcr"
// (fetchmail strips CRs for MDAs by default), fetchmail hands the MDA the
// message exactly as RETR sent it, so no normalisation is needed.
type fetchmail struct {
	a      clientAccount
	out    string
	rcfile string
	ids    string
}

func newFetchmail(t *testing.T, a clientAccount) popClient {
	return newFetchmailWith(t, a, "keep")
}

// newFetchmailWith configures fetchmail; retention is "keep" (leave on
// server) or "no keep" plus "flush" (delete what it fetched, and what it
// had fetched before).
func newFetchmailWith(t *testing.T, a clientAccount, retention string) *fetchmail {
	t.Helper()
	f := &fetchmail{a: a, out: filepath.Join(a.Dir, "delivered"), rcfile: filepath.Join(a.Dir, "fetchmailrc"), ids: filepath.Join(a.Dir, ".fetchids")}
	if err := os.MkdirAll(f.out, 0o700); err != nil {
		t.Fatal(err)
	}
	mda := filepath.Join(a.Dir, "mda.sh")
	writeFile(t, mda, fmt.Sprintf("#!/bin/sh\nset -e\nf=$(mktemp %q)\nexec cat > \"$f\"\n", f.out+"/msg.XXXXXXXX"), 0o700)
	var tlsOpts string
	switch a.Mode {
	case modePlain:
		// fetchmail 6.4 requires TLS by default (sslcertck implies it and
		// it tries STLS on its own); sslproto '' is its documented way to
		// poll without TLS.
		tlsOpts = "sslproto ''"
	case modeSTLS:
		// Without "ssl", sslproto tls1.2+ makes STLS mandatory.
		tlsOpts = "sslproto tls1.2+"
	case modeImplicit:
		tlsOpts = "ssl\n  sslproto tls1.2+"
	}
	if a.Mode != modePlain {
		// fetchmail matches the certificate's CN and DNS names only, not
		// IP addresses: the certificate is for "localhost".
		tlsOpts += fmt.Sprintf("\n  sslcertck\n  sslcertfile %q\n  sslcommonname localhost", a.CAFile)
	}
	rc := fmt.Sprintf(`set no syslog
set no bouncemail
set invisible
poll %s service %s protocol pop3 uidl timeout 60
  user %q password %q
  %s
  no rewrite
  no stripcr
  %s
  mda %q
`, a.Host, a.Port, a.User, a.Password, retention, tlsOpts, mda)
	writeFile(t, f.rcfile, rc, 0o600)
	return f
}

func (f *fetchmail) fetch(t *testing.T) [][]byte {
	t.Helper()
	out, code := runProgram(t, f.a.Dir, []string{"FETCHMAILHOME=" + f.a.Dir},
		requireCommand(t, "fetchmail"), "-f", f.rcfile, "-i", f.ids, "--pidfile", filepath.Join(f.a.Dir, "fetchmail.pid"), "--nodetach", "-v")
	// 0: mail was delivered; 1: there was no new mail.
	if code != 0 && code != 1 {
		t.Fatalf("fetchmail exited %d:\n%s", code, out)
	}
	return readAndRemove(t, f.out)
}

func (f *fetchmail) uidlStore() string { return f.ids }

// ---- getmail6 6.18 ----

// getmail runs with its own getmail directory (configuration and oldmail
// file); read_all = false and delete = false make it leave mail on the
// server and fetch only what its oldmail file does not list. Its Maildir
// destination refuses to deliver as root, so getmail runs as the system user
// mail, which owns the maildir (see newGetmail). getmail stores
// the message with Unix line ends and always prepends a Return-Path: header
// (from the message's Return-Path or Sender, else "<unknown>"; our messages
// have neither); delivered_to and received = false stop the Delivered-To:
// and Received: headers. normalise removes that first Return-Path line and
// turns LF back into CRLF; nothing else is changed.
type getmail struct {
	a       clientAccount
	gmdir   string
	maildir string
}

func newGetmail(t *testing.T, a clientAccount) popClient {
	t.Helper()
	g := &getmail{a: a, gmdir: filepath.Join(a.Dir, "getmail"), maildir: filepath.Join(a.Dir, "Maildir")}
	if err := os.Mkdir(g.gmdir, 0o700); err != nil {
		t.Fatal(err)
	}
	makeMaildir(t, g.maildir)
	retriever := "SimplePOP3Retriever"
	extra := ""
	if a.Mode == modeImplicit {
		// With ca_certs, getmail verifies the chain and matches the
		// server name (an IP address here) against the certificate. A
		// copy the mail user can read.
		ca := filepath.Join(a.Dir, "ca.pem")
		b, err := os.ReadFile(a.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, ca, string(b), 0o644)
		retriever = "SimplePOP3SSLRetriever"
		extra = "ca_certs = " + ca + "\n"
	}
	rc := fmt.Sprintf(`[retriever]
type = %s
server = %s
port = %s
username = %s
password = %s
%s
[destination]
type = Maildir
path = %s/

[options]
read_all = false
delete = false
delivered_to = false
received = false
message_log_syslog = false
`, retriever, a.Host, a.Port, a.User, a.Password, extra, g.maildir)
	writeFile(t, filepath.Join(g.gmdir, "getmailrc"), rc, 0o600)
	writeFile(t, filepath.Join(g.gmdir, "getmail-waitpid.py"), getmailWaitpid, 0o644)
	// getmail runs as the system user mail, which owns its files, so that
	// no mail is delivered by root.
	for _, p := range []string{g.gmdir, filepath.Join(g.gmdir, "getmailrc"), g.maildir, g.maildir + "/new", g.maildir + "/cur", g.maildir + "/tmp"} {
		if err := os.Chown(p, mailUID, mailGID); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

// mailUID and mailGID are Debian's user and group mail, which getmail runs
// as.
const mailUID, mailGID = 8, 8

// interpreterOf returns the interpreter a script names in its #! line: the
// Python getmail's modules are installed for (not whichever python3 comes
// first in PATH, which the user mail may not even be able to run).
func interpreterOf(t *testing.T, script string) string {
	t.Helper()
	b, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := bytes.Cut(b, []byte("\n"))
	fields := strings.Fields(strings.TrimPrefix(string(first), "#!"))
	if !bytes.HasPrefix(first, []byte("#!")) || len(fields) != 1 {
		t.Fatalf("%s does not start with a #! line naming one interpreter: %q", script, first)
	}
	return fields[0]
}

// getmailWaitpid runs getmail (the path in its first argument, then
// getmail's own arguments) with the wait for its delivery child mended.
// getmail 6.18 forks a child to deliver each message, installs its SIGCHLD
// handler only after the fork, and has the handler notify a condition the
// parent may not be waiting on yet: a child that exits quickly enough is
// never noticed, and getmail sits out its 60 s timeout before the next
// message. Under load that happened about once in 40 runs, with the child a
// zombie and the parent in futex_wait: getmail6 issues #52 and #226, fixed
// in 6.19 by waiting on the child directly, which this does. Only the wait
// is replaced: retrieving over POP3 and delivering are getmail's own.
const getmailWaitpid = `import os, runpy, sys
from getmailcore import baseclasses
from getmailcore.exceptions import getmailOperationError

def wait_for_child(self, childpid):
    pid, status = os.waitpid(childpid, 0)
    if os.WIFSIGNALED(status):
        raise getmailOperationError('child pid %d killed by signal %d' % (pid, os.WTERMSIG(status)))
    if not os.WIFEXITED(status):
        raise getmailOperationError('child pid %d failed to exit' % pid)
    return os.WEXITSTATUS(status)

baseclasses.ForkingBase._prepare_child = lambda self: None
baseclasses.ForkingBase._wait_for_child = wait_for_child
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
`

func (g *getmail) fetch(t *testing.T) [][]byte {
	t.Helper()
	prog := requireCommand(t, "getmail")
	out, code := runProgramAs(t, g.a.Dir, nil, &syscall.Credential{Uid: mailUID, Gid: mailGID}, interpreterOf(t, prog),
		filepath.Join(g.gmdir, "getmail-waitpid.py"), prog, "--getmaildir", g.gmdir, "--rcfile", "getmailrc")
	if code != 0 {
		t.Fatalf("getmail exited %d:\n%s", code, out)
	}
	var msgs [][]byte
	for _, m := range readMaildir(t, g.maildir) {
		first, rest, ok := bytes.Cut(m, []byte("\n"))
		if !ok || !bytes.HasPrefix(first, []byte("Return-Path: <")) {
			t.Errorf("getmail stored a message without its Return-Path line first: %q", head(m))
			msgs = append(msgs, m)
			continue
		}
		msgs = append(msgs, lfToCRLF(rest))
	}
	return msgs
}

func (g *getmail) uidlStore() string {
	return filepath.Join(g.gmdir, fmt.Sprintf("oldmail-%s-%s-%s", g.a.Host, g.a.Port, g.a.User))
}

// ---- mpop 1.4 ----

// mpop keeps mail on the server (keep on), remembers UIDLs in its
// uidls_file and delivers to a maildir with received_header off. It stores
// messages with Unix line ends (LF); normalise turns LF back into CRLF and
// changes nothing else. On the plain listener "auth user" is needed: mpop's
// automatic choice refuses every method that sends a password without TLS.
type mpop struct {
	a       clientAccount
	rcfile  string
	uidls   string
	maildir string
}

func newMpop(t *testing.T, a clientAccount) popClient {
	t.Helper()
	m := &mpop{a: a, rcfile: filepath.Join(a.Dir, "mpoprc"), uidls: filepath.Join(a.Dir, "uidls"), maildir: filepath.Join(a.Dir, "Maildir")}
	makeMaildir(t, m.maildir)
	var tlsOpts string
	switch a.Mode {
	case modePlain:
		tlsOpts = "tls off\nauth user"
	case modeSTLS:
		tlsOpts = "tls on\ntls_starttls on\ntls_trust_file " + a.CAFile
	case modeImplicit:
		tlsOpts = "tls on\ntls_starttls off\ntls_trust_file " + a.CAFile
	}
	rc := fmt.Sprintf(`account test
host %s
port %s
user %s
password %s
%s
timeout 60
keep on
only_new on
received_header off
uidls_file %s
delivery maildir %s
`, a.Host, a.Port, a.User, a.Password, tlsOpts, m.uidls, m.maildir)
	writeFile(t, m.rcfile, rc, 0o600)
	return m
}

func (m *mpop) fetch(t *testing.T) [][]byte {
	t.Helper()
	out, code := runProgram(t, m.a.Dir, nil, requireCommand(t, "mpop"), "-C", m.rcfile, "test")
	if code != 0 {
		t.Fatalf("mpop exited %d:\n%s", code, out)
	}
	var msgs [][]byte
	for _, b := range readMaildir(t, m.maildir) {
		msgs = append(msgs, lfToCRLF(b))
	}
	return msgs
}

func (m *mpop) uidlStore() string { return m.uidls }

// ---- curl ----

// curl has no memory: the test keeps the UIDLs. A run is one UIDL listing
// (-X UIDL), one LIST, and one curl that RETRieves each new message by
// number over one connection (-o per message). curl removes the
// dot-stuffing and the terminating line and writes the octets of the
// message as sent: no normalisation.
type curlClient struct {
	a     clientAccount
	known map[string]bool
	opts  []string
	base  string
}

func newCurlClient(t *testing.T, a clientAccount) popClient {
	c := &curlClient{a: a, known: map[string]bool{}}
	c.opts = []string{"-sS", "--max-time", "60", "--user", a.User + ":" + a.Password}
	switch a.Mode {
	case modePlain:
		c.base = "pop3://" + net.JoinHostPort(a.Host, a.Port) + "/"
	case modeSTLS:
		c.base = "pop3://" + net.JoinHostPort(a.Host, a.Port) + "/"
		c.opts = append(c.opts, "--ssl-reqd", "--cacert", a.CAFile)
	case modeImplicit:
		c.base = "pop3s://" + net.JoinHostPort(a.Host, a.Port) + "/"
		c.opts = append(c.opts, "--cacert", a.CAFile)
	}
	return c
}

func (c *curlClient) run(t *testing.T, args ...string) string {
	t.Helper()
	out, code := runProgram(t, c.a.Dir, nil, requireCommand(t, "curl"), append(append([]string(nil), c.opts...), args...)...)
	if code != 0 {
		t.Fatalf("curl %v exited %d: %s", args, code, out)
	}
	return out
}

// listing parses "n value" lines.
func listing(t *testing.T, s string) map[int]string {
	t.Helper()
	m := map[int]string{}
	for _, line := range strings.Split(strings.TrimSpace(s), "\r\n") {
		if line == "" {
			continue
		}
		n, v, ok := strings.Cut(line, " ")
		num, err := strconv.Atoi(n)
		if !ok || err != nil {
			t.Fatalf("bad listing line %q", line)
		}
		m[num] = v
	}
	return m
}

func (c *curlClient) fetch(t *testing.T) [][]byte {
	t.Helper()
	uidls := listing(t, c.run(t, "-X", "UIDL", c.base))
	sizes := listing(t, c.run(t, c.base))
	if len(sizes) != len(uidls) {
		t.Fatalf("LIST has %d messages, UIDL %d", len(sizes), len(uidls))
	}
	var nums []int
	for n, u := range uidls {
		if !c.known[u] {
			nums = append(nums, n)
		}
	}
	if len(nums) == 0 {
		return nil
	}
	sort.Ints(nums)
	dir := filepath.Join(c.a.Dir, "retr")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, n := range nums {
		args = append(args, fmt.Sprintf("%s%d", c.base, n), "-o", filepath.Join(dir, strconv.Itoa(n)))
	}
	c.run(t, args...)
	var msgs [][]byte
	for _, n := range nums {
		p := filepath.Join(dir, strconv.Itoa(n))
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(p)
		// RETR sends the LIST size in octets, plus a CRLF where the
		// message had no final one.
		if size := strconv.Itoa(len(b)); size != sizes[n] && strconv.Itoa(len(b)-2) != sizes[n] {
			t.Errorf("RETR %d gave %d octets, LIST said %s", n, len(b), sizes[n])
		}
		msgs = append(msgs, b)
		c.known[uidls[n]] = true
	}
	return msgs
}

func (c *curlClient) uidlStore() string { return "" }

// ---- Python poplib ----

// testdata/poplib_fetch.py: UIDL, RETR of what its state file does not
// list, QUIT. poplib returns a message as lines without CRLF (and without
// dot-stuffing); the script joins them with CRLF and adds a final CRLF,
// which gives back the RETR octets for messages without bare CR or LF.
type poplibClient struct {
	a            clientAccount
	state, out   string
	script, mode string
}

func newPoplib(t *testing.T, a clientAccount) popClient {
	t.Helper()
	script, err := filepath.Abs("testdata/poplib_fetch.py")
	if err != nil {
		t.Fatal(err)
	}
	p := &poplibClient{a: a, state: filepath.Join(a.Dir, "uidls"), out: filepath.Join(a.Dir, "out"), script: script}
	p.mode = map[string]string{modePlain: "plain", modeSTLS: "stls", modeImplicit: "ssl"}[a.Mode]
	if err := os.Mkdir(p.out, 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *poplibClient) fetch(t *testing.T) [][]byte {
	t.Helper()
	out, code := runProgram(t, p.a.Dir, []string{"POP3_PASSWORD=" + p.a.Password}, requireCommand(t, "python3"),
		p.script, p.mode, p.a.Host, p.a.Port, p.a.User, p.a.CAFile, p.state, p.out)
	if code != 0 {
		t.Fatalf("poplib_fetch.py exited %d:\n%s", code, out)
	}
	return readAndRemove(t, p.out)
}

func (p *poplibClient) uidlStore() string { return p.state }
