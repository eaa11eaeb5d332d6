package maildir

import (
	"reflect"
	"strings"
	"testing"
)

func TestImportDovecotUIDListParse(t *testing.T) {
	const v3 = "3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1\n" +
		"25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394:2,\n" +
		"25017 W2481 P000061994c08a830 O3 :1276533073.M242911P3632.kurkku:2,F\n" +
		"25018 G5f3a :1276533074.M1P1.kurkku,S=10\n" +
		"25006 W1400 :1276528487.M364837P9451.kurkku,S=1355:2,S\n" // appended later: the newer record wins
	l, err := parseDovecotUIDList(strings.NewReader(v3), "uidlist")
	if err != nil {
		t.Fatal(err)
	}
	want := []uidlistEntry{
		{UID: 25006, VSize: 1400, Filename: "1276528487.M364837P9451.kurkku,S=1355:2,S"},
		{UID: 25017, POP3UIDL: "000061994c08a830", VSize: 2481, Filename: "1276533073.M242911P3632.kurkku:2,F"},
		{UID: 25018, VSize: -1, Filename: "1276533074.M1P1.kurkku,S=10"},
	}
	if l.Version != 3 || l.UIDValidity != 1275660208 || l.NextUID != 25022 || !reflect.DeepEqual(l.Entries, want) {
		t.Fatalf("parsed %+v\nwant entries %+v", l, want)
	}
	l, err = parseDovecotUIDList(strings.NewReader("1 1275660208 3\n1 1276528487.M1.host,S=5,W=6:2,\n2 1276528488.M2.host\n"), "v1")
	if err != nil || l.UIDValidity != 1275660208 || len(l.Entries) != 2 || l.Entries[0].VSize != 6 || l.Entries[1].VSize != -1 {
		t.Fatalf("version 1: %+v, %v", l, err)
	}
	for _, bad := range []string{"", "2 V1 N2\n", "3 N5\n", "3 V1\nx :f\n", "3 V1\n5 nofile\n"} {
		if _, err := parseDovecotUIDList(strings.NewReader(bad), "bad"); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
