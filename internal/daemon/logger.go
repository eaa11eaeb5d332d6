package daemon

import (
	"fmt"
	"io"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// NewLogger builds the process logger from log.level and log.format,
// writing to w, with the level that a reload of log.level changes
// (Options.Level).
func NewLogger(w io.Writer, level, format string) (*zap.Logger, zap.AtomicLevel, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, zap.AtomicLevel{}, fmt.Errorf("log.level: %w", err)
	}
	var enc zapcore.Encoder
	switch format {
	case "console":
		enc = zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	default:
		ec := zap.NewProductionEncoderConfig()
		ec.TimeKey = "time"
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
	}
	atom := zap.NewAtomicLevelAt(lvl)
	out := zapcore.Lock(zapcore.AddSync(w))
	// Every session's lines, not a sample.
	opts := []zap.Option{zap.AddCaller(), zap.ErrorOutput(out)}
	if lvl <= zapcore.DebugLevel {
		opts = append(opts, zap.AddStacktrace(zapcore.ErrorLevel))
	}
	return zap.New(&keptFields{Core: zapcore.NewCore(enc, out, atom)}, opts...), atom, nil
}
