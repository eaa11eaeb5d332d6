package config

import (
	"reflect"

	"gopkg.in/yaml.v3"
)

// Redacted renders cfg as YAML with every secret (fields tagged
// secret:"true") replaced, so check-config output can be pasted anywhere.
func (cfg *Config) Redacted() ([]byte, error) {
	c := *cfg
	c.Listeners = append([]Listener(nil), cfg.Listeners...)
	redact(reflect.ValueOf(&c).Elem())
	return yaml.Marshal(&c)
}

func redact(v reflect.Value) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := v.Field(i)
		switch {
		case t.Field(i).Tag.Get("secret") == "true" && f.Kind() == reflect.String && f.String() != "":
			f.SetString("REDACTED")
		case f.Kind() == reflect.Struct:
			redact(f)
		}
	}
}
