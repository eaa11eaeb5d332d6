package config

import (
	"encoding"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// EnvPrefix starts every environment override: POPBRIDGE_UPSTREAM_ADDRESS
// sets upstream.address, POPBRIDGE_LISTENERS_0_TLS sets listeners[0].tls.
const EnvPrefix = "POPBRIDGE_"

// applyEnv sets every scalar key named in environ. Lists of strings are
// comma-separated. The environment wins over the file.
func applyEnv(cfg *Config, environ []string) error {
	var errs Errors
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) || name == EnvPrefix+"CONFIG" {
			continue
		}
		path := strings.ToLower(strings.TrimPrefix(name, EnvPrefix))
		key, err := setPath(reflect.ValueOf(cfg).Elem(), path, value)
		if err != nil {
			errs = append(errs, KeyError{Key: key, Problem: fmt.Sprintf("from %s: %v", name, err)})
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

var durationType = reflect.TypeOf(time.Duration(0))

// setPath walks v along path ("upstream_connect_timeout") matching YAML keys,
// which may themselves contain underscores, and sets the scalar it ends on.
// It returns the dotted key for error messages.
func setPath(v reflect.Value, path, value string) (string, error) {
	switch v.Kind() {
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
			if tag == "" {
				continue
			}
			if path == tag {
				return tag, setScalar(v.Field(i), value)
			}
			if rest, ok := strings.CutPrefix(path, tag+"_"); ok {
				f := v.Field(i)
				if f.Kind() == reflect.Struct || (f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct) {
					sub, err := setPath(f, rest, value)
					return tag + "." + sub, err
				}
			}
		}
	case reflect.Slice:
		idxStr, rest, _ := strings.Cut(path, "_")
		idx, err := strconv.Atoi(idxStr)
		if err != nil || idx < 0 || idx > 63 {
			return path, fmt.Errorf("%q is not a list index", idxStr)
		}
		if idx >= v.Len() {
			grown := reflect.MakeSlice(v.Type(), idx+1, idx+1)
			reflect.Copy(grown, v)
			v.Set(grown)
		}
		sub, err := setPath(v.Index(idx), rest, value)
		return idxStr + "." + sub, err
	}
	return strings.ReplaceAll(path, "_", "."), fmt.Errorf("no such key")
}

func setScalar(f reflect.Value, value string) error {
	if u, ok := f.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return u.UnmarshalText([]byte(value))
	}
	if f.Type() == durationType {
		d, err := time.ParseDuration(value)
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
		return nil
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(value)
	case reflect.Bool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return err
		}
		f.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return err
		}
		f.SetInt(n)
	case reflect.Slice:
		if f.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("not a scalar key")
		}
		var items []string
		for _, s := range strings.Split(value, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		f.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("not a scalar key")
	}
	return nil
}
