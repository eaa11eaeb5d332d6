package config

import (
	"strings"
	"testing"
)

// TestUIDLFormatNames: check-config takes the named formats and refuses
// the ones popbridge cannot honour, pointing to what works instead.
func TestUIDLFormatNames(t *testing.T) {
	for _, ok := range []string{"dovecot", "cyrus", "gmail", "%v.%u", "%v-%u"} {
		if _, err := Parse([]byte(minimal+"policy:\n  uidl_format: \""+ok+"\"\n"), nil); err != nil {
			t.Errorf("uidl_format %q: %v", ok, err)
		}
	}
	for bad, hint := range map[string]string{"courier": "import-uidl", "xuidl": "reuse_xuidl", "nonsense": "template"} {
		_, err := Parse([]byte(minimal+"policy:\n  uidl_format: "+bad+"\n"), nil)
		if err == nil || !strings.Contains(err.Error(), "policy.uidl_format") || !strings.Contains(err.Error(), hint) {
			t.Errorf("uidl_format %q: %v, want an error on policy.uidl_format naming %s", bad, err, hint)
		}
	}
}
