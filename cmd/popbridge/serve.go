package main

import (
	"context"
	"io"
	"os"

	"go.uber.org/zap"

	"github.com/popbridge/popbridge/internal/daemon"
)

func cmdServe(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, path, err := loadConfig("serve", args, stderr)
	if err != nil {
		return err
	}
	log, level, err := daemon.NewLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return err
	}
	defer log.Sync()
	log.Info("starting", zap.String("version", version), zap.String("config", path))

	// SIGHUP reloads the configuration file.
	reload, stop := daemon.Reloads()
	defer stop()
	return daemon.Run(ctx, cfg, log, daemon.Options{ConfigPath: path, Environ: os.Environ(), Level: &level,
		Reload: reload, Version: version})
}
