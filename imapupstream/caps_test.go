package imapupstream

import (
	"testing"

	"github.com/emersion/go-imap/v2"
)

// Has looks a name up case-insensitively, with what IMAP4rev2 implies.
func TestCapsHas(t *testing.T) {
	rev2 := capsFrom(imap.CapSet{imap.CapIMAP4rev2: {}, "X-GM-EXT-1": {}})
	rev1 := capsFrom(imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}, "AUTH=PLAIN": {}})
	for _, tc := range []struct {
		caps Caps
		name string
		want bool
	}{
		{rev2, "IMAP4rev2", true},
		{rev2, "imap4REV2", true},
		{rev2, "uidplus", true}, // implied by IMAP4rev2
		{rev2, "MOVE", true},
		{rev2, "x-gm-ext-1", true},
		{rev2, "QRESYNC", false},
		{rev2, "IMAP4rev1", false},
		{rev1, "IMAP4REV1", true},
		{rev1, "UIDPlus", true},
		{rev1, "auth=plain", true},
		{rev1, "MOVE", false},
		{rev1, "IMAP4rev2", false},
		{Caps{}, "UIDPLUS", false},
	} {
		if got := tc.caps.Has(tc.name); got != tc.want {
			t.Errorf("%v: Has(%q) = %v, want %v", tc.caps.set, tc.name, got, tc.want)
		}
	}
	if !rev2.UIDPlus || !rev2.Move || !rev2.IMAP4rev2 || rev1.Move || !rev1.UIDPlus {
		t.Errorf("flags: rev2 %+v, rev1 %+v", rev2, rev1)
	}
}
