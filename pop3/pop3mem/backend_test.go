package pop3mem

import (
	"context"
	"errors"
	"io"
	"math"
	"slices"
	"testing"

	"github.com/popbridge/popbridge/pop3"
)

func login(t *testing.T, b *Backend, cred pop3.Credentials) (pop3.Session, error) {
	t.Helper()
	return b.Login(context.Background(), &pop3.ConnInfo{ID: "test"}, &cred)
}

func TestLogin(t *testing.T) {
	b := New()
	u := b.AddUser("alice", "secret")
	u.SetToken("tok")
	b.AddUser("bob", "pw")
	for _, tc := range []struct {
		name string
		cred pop3.Credentials
		ok   bool
	}{
		{"password", pop3.Credentials{Mechanism: "USER", Username: "alice", Password: "secret"}, true},
		{"PLAIN with authzid of the user", pop3.Credentials{Mechanism: "PLAIN", Username: "alice", AuthzID: "alice", Password: "secret"}, true},
		{"token", pop3.Credentials{Mechanism: "XOAUTH2", Username: "alice", Token: "tok"}, true},
		{"wrong password", pop3.Credentials{Mechanism: "USER", Username: "alice", Password: "nope"}, false},
		{"password where a token is wanted", pop3.Credentials{Mechanism: "OAUTHBEARER", Username: "alice", Password: "secret"}, false},
		{"no token set", pop3.Credentials{Mechanism: "OAUTHBEARER", Username: "bob", Token: ""}, false},
		{"someone else's maildrop", pop3.Credentials{Mechanism: "PLAIN", Username: "alice", AuthzID: "bob", Password: "secret"}, false},
		{"unknown user", pop3.Credentials{Mechanism: "USER", Username: "carol", Password: "secret"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := login(t, b, tc.cred)
			if !tc.ok {
				if !errors.Is(err, pop3.ErrAuthFailed) {
					t.Fatalf("Login = %v, %v; want ErrAuthFailed", s, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
		})
	}
}

// TestMaildrop: the lock, the snapshot, Update and TOP.
func TestMaildrop(t *testing.T) {
	b := New()
	u := b.AddUser("alice", "secret")
	one := []byte("Subject: 1\r\nX: y\r\n\r\nbody 1\r\nbody 2\r\nbody 3")
	two := []byte("Subject: 2\n\nbare LF\n")
	u.Append(one)
	if uidl := u.Append(two); uidl != "2" {
		t.Fatalf("second UIDL %q", uidl)
	}
	read := func(rc io.ReadCloser, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	cred := pop3.Credentials{Mechanism: "USER", Username: "alice", Password: "secret"}
	s, err := login(t, b, cred)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := login(t, b, cred); !errors.Is(err, ErrInUse) {
		t.Fatalf("second login while the first is open: %v", err)
	}
	three := u.Append([]byte("Subject: 3\r\n\r\n"))
	want := []pop3.Message{{Size: int64(len(one)), UIDL: "1"}, {Size: int64(len(two)), UIDL: "2"}}
	if got := s.Messages(); !slices.Equal(got, want) {
		t.Fatalf("Messages = %v, want %v (a message appended after login is not in the snapshot)", got, want)
	}
	for _, tc := range []struct {
		n, lines int
		want     string
	}{
		{1, 0, "Subject: 1\r\nX: y\r\n\r\n"},
		{1, 2, "Subject: 1\r\nX: y\r\n\r\nbody 1\r\nbody 2\r\n"},
		{1, math.MaxInt, string(one)},
		{2, 1, string(two)},
	} {
		if got := read(s.Top(context.Background(), tc.n, tc.lines)); got != tc.want {
			t.Errorf("TOP %d %d = %q, want %q", tc.n, tc.lines, got, tc.want)
		}
	}
	if got := read(s.Retrieve(context.Background(), 2)); got != string(two) {
		t.Errorf("RETR 2 = %q", got)
	}
	if err := s.Update(context.Background(), []int{1}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if got := u.Messages(); len(got) != 2 || string(got[0]) != string(two) {
		t.Fatalf("after UPDATE of 1: %q", got)
	}

	s, err = login(t, b, cred)
	if err != nil {
		t.Fatalf("login after Close: %v", err)
	}
	defer s.Close()
	if got := s.Messages(); len(got) != 2 || got[0].UIDL != "2" || got[1].UIDL != three {
		t.Fatalf("the next session's listing: %v", got)
	}
}
