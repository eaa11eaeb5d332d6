package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/popbridge/popbridge/internal/config"
)

// cmdDemo runs popbridge with no setup at all: an in-memory IMAP server
// with user demo/demo and sample messages as the upstream, and an embedded
// state store in a temporary folder.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:1110", "POP3 address")
	if err := fs.Parse(args); err != nil {
		return err
	}

	upstream, stopUpstream, err := startDemoUpstream()
	if err != nil {
		return err
	}
	defer stopUpstream()

	dir, err := os.MkdirTemp("", "popbridge-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	cfg := config.Default()
	cfg.Listeners = []config.Listener{{Address: *listen, TLS: "none"}}
	cfg.Upstream.Address = upstream
	cfg.Upstream.TLS = "none"
	cfg.State.Path = filepath.Join(dir, "state.db")
	cfg.Auth.FailureDelay = 500 * time.Millisecond
	cfg.Log.Format = "console"
	cfg.ShutdownGrace = 2 * time.Second

	log, err := newLogger(cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return err
	}
	defer log.Sync()

	return serveConfig(ctx, cfg, log, func(addrs []net.Addr) {
		pop := addrs[0].String()
		fmt.Fprintf(stdout, `popbridge demo is running.
  POP3:     %s (user demo, password demo)
  upstream: in-memory IMAP server at %s (mail is lost on exit)

Try:
  curl -s pop3://demo:demo@%s/        # list the messages
  curl -s pop3://demo:demo@%s/1       # fetch message 1
  curl -s -X UIDL pop3://demo:demo@%s/
Press Ctrl-C to stop.
`, pop, upstream, pop, pop, pop)
	})
}

// startDemoUpstream serves an imapmemserver on a free loopback port.
func startDemoUpstream() (addr string, stop func(), err error) {
	mem := imapmemserver.New()
	user := imapmemserver.NewUser("demo", "demo")
	for _, mbox := range []string{"INBOX", "Trash"} {
		if err := user.Create(mbox, nil); err != nil {
			return "", nil, fmt.Errorf("demo upstream: %w", err)
		}
	}
	for _, msg := range demoMessages() {
		if _, err := user.Append("INBOX", bytes.NewReader(msg), &imap.AppendOptions{}); err != nil {
			return "", nil, fmt.Errorf("demo upstream: %w", err)
		}
	}
	mem.AddUser(user)

	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		InsecureAuth: true, // loopback only
		Logger:       discardLogger{},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("demo upstream: %w", err)
	}
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close() }, nil
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
