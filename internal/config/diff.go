package config

import (
	"reflect"
	"strconv"
	"strings"
)

// Diff returns the dotted keys whose values differ between a and b, in the
// order of the Config struct: "auth.failure_delay", "listeners.1.tls", or
// "listeners" when the number of listeners changed. Lists of strings count
// as one key ("auth.mechanisms"). Secrets are compared like any value; only
// their key is returned.
func Diff(a, b *Config) []string {
	var keys []string
	diffValue(reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem(), "", &keys)
	return keys
}

func diffValue(a, b reflect.Value, key string, keys *[]string) {
	switch {
	case a.Kind() == reflect.Struct:
		t := a.Type()
		for i := 0; i < t.NumField(); i++ {
			tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			sub := tag
			if key != "" {
				sub = key + "." + tag
			}
			diffValue(a.Field(i), b.Field(i), sub, keys)
		}
	case a.Kind() == reflect.Slice && a.Type().Elem().Kind() == reflect.Struct:
		if a.Len() != b.Len() {
			*keys = append(*keys, key)
			return
		}
		for i := 0; i < a.Len(); i++ {
			diffValue(a.Index(i), b.Index(i), key+"."+strconv.Itoa(i), keys)
		}
	case a.Kind() == reflect.Slice || a.Kind() == reflect.Map:
		// nil and empty are the same list (or map) to an operator.
		if a.Len() != b.Len() || (a.Len() > 0 && !reflect.DeepEqual(a.Interface(), b.Interface())) {
			*keys = append(*keys, key)
		}
	default:
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			*keys = append(*keys, key)
		}
	}
}
