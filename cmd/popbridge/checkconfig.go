package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/popbridge/popbridge/cmd/internal/config"
)

func cmdCheckConfig(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	path := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*path, os.Environ())
	if err != nil {
		return err
	}
	out, err := cfg.Redacted()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# %s: OK\n", *path)
	_, err = stdout.Write(out)
	return err
}
