package daemon

import "go.uber.org/zap/zapcore"

// keptFields is a zapcore.Core whose With keeps the fields as they are and
// hands them to the core beneath with each entry, where zap's own With
// encodes them at once into a buffer of its pool (1 KiB at least). Every
// session has a logger With its session id and user, and an idle session
// would hold that buffer for as long as it lasts; a session writes a few
// lines, and encoding its fields again for each costs less than holding
// them. The fields are read when an entry is written, as zap's WithLazy
// does.
type keptFields struct {
	zapcore.Core
	fields []zapcore.Field
}

func (c *keptFields) With(fields []zapcore.Field) zapcore.Core {
	if len(fields) == 0 {
		return c
	}
	return &keptFields{Core: c.Core, fields: joinFields(c.fields, fields)}
}

func (c *keptFields) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

func (c *keptFields) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	return c.Core.Write(ent, joinFields(c.fields, fields))
}

// joinFields is a then b, in a slice of its own (never a's, which other
// loggers With the same parent share).
func joinFields(a, b []zapcore.Field) []zapcore.Field {
	if len(a) == 0 {
		return b
	}
	out := make([]zapcore.Field, 0, len(a)+len(b))
	return append(append(out, a...), b...)
}
