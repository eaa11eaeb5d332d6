// Package config reads popbridge's YAML configuration: the keys and defaults
// documented in config.yaml.example, environment overrides (POPBRIDGE_ + the key path in
// capitals), validation that names the key and line of every problem, and a
// redacted rendering for check-config.
package config
