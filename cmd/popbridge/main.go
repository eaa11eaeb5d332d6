package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/daemon"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const defaultConfigPath = "/etc/popbridge/config.yaml"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole command line, separated from main so tests can drive it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(ctx, args[1:], stderr)
	case "demo":
		err = cmdDemo(ctx, args[1:], stdout, stderr)
	case "state":
		err = cmdState(ctx, args[1:], stdout, stderr)
	case "check-config":
		err = cmdCheckConfig(args[1:], stdout, stderr)
	case "import-uidl":
		err = cmdImportUIDL(ctx, args[1:], os.Stdin, stdout, stderr)
	case "oauth2":
		err = cmdOAuth2(ctx, args[1:], os.Stdin, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "popbridge %s\n", version)
	case "help", "-h", "-help", "--help":
		usage(stdout)
	default:
		fmt.Fprintf(stderr, "popbridge: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 2
		}
		fmt.Fprintf(stderr, "popbridge: %v\n", err)
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: popbridge <command> [flags]

commands:
  serve [-config FILE]         run the proxy (default FILE: $POPBRIDGE_CONFIG or `+defaultConfigPath+`)
  demo                         zero-setup demo: in-memory IMAP upstream, POP3 on 127.0.0.1:1110, user demo/demo
  check-config [-config FILE]  validate the config and print it with secrets redacted
  state show|mark-old|reset [-config FILE] USER
                               show a user's maildrop as POP3 saw it, mark all present mail
                               as already retrieved (password on stdin), or forget the state
  state migrate -from-bolt PATH [-force] [-config FILE]
                               copy an embedded (bolt) store into the configured PostgreSQL store
  import-uidl [-config FILE] -user USER (-pop3 HOST:PORT | -dovecot-uidlist FILE) [-force] [-dry-run]
                               seed a user's UIDLs from the previous POP3 server (password on stdin;
                               popbridge import-uidl -h for every flag)
  oauth2 enroll|passwords|status|forget [-config FILE] USER
                               enrol a user of an OAuth2 upstream (device flow) and manage the app
                               passwords of their POP3 devices (popbridge oauth2 -h for every flag)
  version                      print the version
`)
}

// loadConfig parses a subcommand's flags (just -config) and loads the
// configuration it names, with the environment's overrides.
func loadConfig(name string, args []string, stderr io.Writer) (cfg *config.Config, path string, err error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	p := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return nil, "", err
	}
	cfg, err = loadConfigFile(*p)
	return cfg, *p, err
}

// configFlag adds -config to fs with the documented default.
func configFlag(fs *flag.FlagSet) *string {
	def := os.Getenv("POPBRIDGE_CONFIG")
	if def == "" {
		def = defaultConfigPath
	}
	return fs.String("config", def, "configuration file (env POPBRIDGE_CONFIG)")
}

// loadConfigFile loads the configuration at path with the environment's
// overrides.
func loadConfigFile(path string) (*config.Config, error) {
	return config.Load(path, os.Environ())
}

// newLogger builds the process logger from log.level and log.format,
// writing to standard error.
func newLogger(level, format string) (*zap.Logger, error) {
	log, _, err := daemon.NewLogger(os.Stderr, level, format)
	return log, err
}
