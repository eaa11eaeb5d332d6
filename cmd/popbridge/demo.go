package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/daemon"
	"github.com/popbridge/popbridge/internal/demo"
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

	upstream, stopUpstream, err := demo.StartUpstream()
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

	return daemon.Run(ctx, cfg, log, daemon.Options{Ready: func(addrs []net.Addr) {
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
	}})
}
