package pop3

import (
	"slices"
	"testing"
)

func TestMaildrop(t *testing.T) {
	d := newMaildrop([]Message{{Size: 10, UIDL: "a"}, {Size: 20, UIDL: "b"}, {Size: 30, UIDL: "c"}})
	stat := func(wantCount int, wantSize int64) {
		t.Helper()
		if count, size := d.stat(); count != wantCount || size != wantSize {
			t.Fatalf("stat = %d %d, want %d %d", count, size, wantCount, wantSize)
		}
	}
	listed := func(want ...int) {
		t.Helper()
		var got []int
		for n, m := range d.listed() {
			if m != d.message(n) {
				t.Fatalf("listed %d as %v, message(%d) is %v", n, m, n, d.message(n))
			}
			got = append(got, n)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("listed %v, want %v", got, want)
		}
	}

	stat(3, 60)
	listed(1, 2, 3)
	for n, want := range map[int]bool{-1: false, 0: false, 1: true, 3: true, 4: false} {
		if d.exists(n) != want {
			t.Errorf("exists(%d) = %v", n, !want)
		}
	}
	if got := d.deleted(); got == nil || len(got) != 0 {
		t.Fatalf("deleted before DELE: %#v, want empty, not nil", got)
	}
	if d.next(0) != 1 || d.next(3) != 0 {
		t.Fatalf("next(0) = %d, next(3) = %d", d.next(0), d.next(3))
	}

	d.dele(2)
	stat(2, 40)
	listed(1, 3)
	if !d.isDeleted(2) || d.isDeleted(1) {
		t.Fatal("marks wrong after DELE 2")
	}
	if d.next(1) != 3 {
		t.Fatalf("next(1) = %d after DELE 2, want 3", d.next(1))
	}
	d.dele(3)
	stat(1, 10)
	if got := d.deleted(); !slices.Equal(got, []int{2, 3}) {
		t.Fatalf("deleted = %v", got)
	}
	if d.next(1) != 0 {
		t.Fatalf("next(1) = %d with 2 and 3 marked", d.next(1))
	}

	d.reset()
	stat(3, 60)
	listed(1, 2, 3)
	if got := d.deleted(); len(got) != 0 {
		t.Fatalf("deleted after RSET: %v", got)
	}
}

func TestMaildropEmpty(t *testing.T) {
	d := newMaildrop(nil)
	if count, size := d.stat(); count != 0 || size != 0 {
		t.Fatalf("stat = %d %d", count, size)
	}
	if d.exists(1) || d.next(0) != 0 {
		t.Fatal("an empty maildrop has a message")
	}
	for range d.listed() {
		t.Fatal("an empty maildrop listed a message")
	}
}
