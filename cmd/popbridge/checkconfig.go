package main

import (
	"fmt"
	"io"
)

func cmdCheckConfig(args []string, stdout, stderr io.Writer) error {
	cfg, path, err := loadConfig("check-config", args, stderr)
	if err != nil {
		return err
	}
	out, err := cfg.Redacted()
	if err != nil {
		return err
	}
	// Risky settings are warnings, not errors: the file is valid.
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stderr, "warning: %v\n", w)
	}
	fmt.Fprintf(stdout, "# %s: OK\n", path)
	_, err = stdout.Write(out)
	return err
}
