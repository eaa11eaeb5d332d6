package config

import (
	"reflect"

	"gopkg.in/yaml.v3"
)

// Redacted renders cfg as YAML with every secret (fields tagged
// secret:"true") replaced, so check-config output can be pasted anywhere.
func (cfg *Config) Redacted() ([]byte, error) {
	c := *cfg
	redact(reflect.ValueOf(&c).Elem())
	return yaml.Marshal(&c)
}

// redact works on a copy of the struct v: lists of structs (listeners,
// routes) are copied before their elements are redacted.
func redact(v reflect.Value) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := v.Field(i)
		switch {
		case t.Field(i).Tag.Get("secret") == "true" && f.Kind() == reflect.String && f.String() != "":
			f.SetString("REDACTED")
		case t.Field(i).Tag.Get("secret") == "true" && f.Kind() == reflect.Map && f.Len() > 0:
			// Every value of a secret map (the hook's headers), in a
			// copy: the keys stay, they say what is configured.
			m := reflect.MakeMapWithSize(f.Type(), f.Len())
			for _, k := range f.MapKeys() {
				m.SetMapIndex(k, reflect.ValueOf("REDACTED"))
			}
			f.Set(m)
		case f.Kind() == reflect.Struct:
			redact(f)
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct && f.Len() > 0:
			elems := reflect.MakeSlice(f.Type(), f.Len(), f.Len())
			reflect.Copy(elems, f)
			for j := 0; j < elems.Len(); j++ {
				redact(elems.Index(j))
			}
			f.Set(elems)
		}
	}
}
