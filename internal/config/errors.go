package config

import (
	"strconv"
	"strings"
)

// KeyError is one problem with one configuration key.
type KeyError struct {
	Key     string // dotted path, e.g. "upstream.tls" or "listeners.1.address"
	Line    int    // line in the file, 0 when the value came from a default or the environment
	Problem string
}

func (e KeyError) Error() string {
	var b strings.Builder
	b.WriteString(e.Key)
	if e.Line > 0 {
		b.WriteString(" (line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(")")
	}
	b.WriteString(": ")
	b.WriteString(e.Problem)
	return b.String()
}

// Errors is every problem found in one configuration.
type Errors []KeyError

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return "config: " + strings.Join(parts, "; ")
}
