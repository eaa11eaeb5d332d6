package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads the file at path over the defaults, applies environment
// overrides from environ (KEY=VALUE strings, as os.Environ gives them) and
// validates the result. Every problem is reported, each naming its key.
func Load(path string, environ []string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, environ)
}

// Parse is Load for a file already in memory.
func Parse(data []byte, environ []string) (*Config, error) {
	cfg := Default()
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true) // a misspelt key is an error, not a silent default
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := applyEnv(cfg, environ); err != nil {
		return nil, err
	}
	if errs := cfg.validate(); len(errs) > 0 {
		for i := range errs {
			if line := lineOf(&root, errs[i].Key); line > 0 {
				errs[i].Line = line
			}
		}
		return nil, errs
	}
	cfg.src = &root
	return cfg, nil
}

// lineOf returns the line of the key at a dotted path such as
// "listeners.0.tls" in the YAML document, or 0 when the file does not set it.
func lineOf(root *yaml.Node, path string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 0
	for _, part := range strings.Split(path, ".") {
		switch n.Kind {
		case yaml.MappingNode:
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == part {
					line = n.Content[i].Line
					n = n.Content[i+1]
					found = true
					break
				}
			}
			if !found {
				return 0
			}
		case yaml.SequenceNode:
			var idx int
			if _, err := fmt.Sscanf(part, "%d", &idx); err != nil || idx < 0 || idx >= len(n.Content) {
				return 0
			}
			n = n.Content[idx]
			line = n.Line
		default:
			return 0
		}
	}
	return line
}
