package uidmap_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/uidmap"
)

func TestNamedFormats(t *testing.T) {
	gm := &uidmap.Identity{GmailMsgID: 1363378113778197832}
	cases := []struct {
		spec string
		id   *uidmap.Identity
		want string // for UID 26, UIDVALIDITY 1795627431
	}{
		{"cyrus", nil, "1795627431.26"},
		{"Cyrus", nil, "1795627431.26"},
		{"gmail", gm, "GmailId12ebb12bc64aa548"},
		{"gmail", &uidmap.Identity{GmailMsgID: 0x1a}, "GmailId1a"},
		// Without an X-GM-MSGID (not Gmail): Dovecot's, still unique.
		{"gmail", &uidmap.Identity{MessageID: "<a@b>"}, "0000001a6b0719a7"},
		{"gmail", nil, "0000001a6b0719a7"},
		{"DOVECOT", nil, "0000001a6b0719a7"},
		// Cyrus's other uidl_format settings, as templates.
		{"%u", nil, "26"},
		{"%v-%u", nil, "1795627431-26"},
	}
	for _, c := range cases {
		f, err := uidmap.ParseFormat(c.spec)
		if err != nil {
			t.Errorf("%q: %v", c.spec, err)
			continue
		}
		got := f.UIDL(1795627431, 26, c.id)
		if got != c.want || !pop3.ValidUIDL(got) {
			t.Errorf("%q: got %q, want %q", c.spec, got, c.want)
		}
	}
	// The largest X-GM-MSGID still makes a valid UIDL.
	if u := (uidmap.FormatGmail{}).UIDL(1, 1, &uidmap.Identity{GmailMsgID: ^uint64(0)}); u != "GmailIdffffffffffffffff" || !pop3.ValidUIDL(u) {
		t.Errorf("largest X-GM-MSGID: %q", u)
	}
}

// TestRefusedFormats: names popbridge cannot honour are refused, each with
// the way that works instead (check-config shows the error).
func TestRefusedFormats(t *testing.T) {
	for spec, hint := range map[string]string{
		"courier": "import-uidl",
		"xuidl":   "reuse_xuidl",
		"X-UIDL":  "reuse_xuidl",
	} {
		_, err := uidmap.ParseFormat(spec)
		if err == nil || !strings.Contains(err.Error(), hint) {
			t.Errorf("%q: %v, want an error that points to %s", spec, err, hint)
		}
	}
}

func TestFormatNeeds(t *testing.T) {
	gmail, _ := uidmap.ParseFormat("gmail")
	for _, spec := range []string{"", "dovecot", "cyrus", "%v.%u", "%m"} {
		f, _ := uidmap.ParseFormat(spec)
		if n := uidmap.NeedsOf(f); n != (uidmap.Needs{}) {
			t.Errorf("%q needs %+v", spec, n)
		}
	}
	n := uidmap.NeedsOf(gmail)
	if !n.GmailMsgID {
		t.Fatalf("gmail needs %+v", n)
	}
	if got := uidmap.New(uidmap.NewMemoryStore(), uidmap.Options{Format: gmail}).Needs(); got != n {
		t.Errorf("Map.Needs %+v, want %+v", got, n)
	}
	gmailCaps := func(c string) bool { return strings.EqualFold(c, "X-GM-EXT-1") }
	noCaps := func(string) bool { return false }
	if err := n.Unmet(gmailCaps); err != nil {
		t.Errorf("with X-GM-EXT-1: %v", err)
	}
	if err := n.Unmet(noCaps); !errors.Is(err, uidmap.ErrUnmet) || !strings.Contains(err.Error(), "X-GM-EXT-1") {
		t.Errorf("without X-GM-EXT-1: %v", err)
	}
	if err := (uidmap.Needs{}).Unmet(noCaps); err != nil {
		t.Errorf("no needs: %v", err)
	}
}
