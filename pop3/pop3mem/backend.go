package pop3mem

import (
	"bytes"
	"context"
	"crypto/subtle"
	"io"
	"slices"
	"strconv"
	"sync"

	"github.com/popbridge/popbridge/pop3"
)

// ErrInUse is what a login gets while another session has the maildrop.
var ErrInUse = &pop3.Error{Code: pop3.CodeInUse, Message: "maildrop already in use"}

// Backend is an in-memory pop3.Backend. It is safe for concurrent use.
type Backend struct {
	mu    sync.Mutex
	users map[string]*User
}

// New returns a Backend without users.
func New() *Backend {
	return &Backend{users: make(map[string]*User)}
}

// AddUser adds a user with an empty maildrop and returns it; a user of that
// name already there keeps its maildrop and gets the new password.
func (b *Backend) AddUser(name, password string) *User {
	b.mu.Lock()
	defer b.mu.Unlock()
	u := b.users[name]
	if u == nil {
		u = &User{}
		b.users[name] = u
	}
	u.mu.Lock()
	u.password = password
	u.mu.Unlock()
	return u
}

// Login implements pop3.Backend: it checks the password (the token for
// OAUTHBEARER and XOAUTH2), refuses an authorization identity other than
// the user, and locks the maildrop for the session.
func (b *Backend) Login(_ context.Context, _ *pop3.ConnInfo, cred *pop3.Credentials) (pop3.Session, error) {
	b.mu.Lock()
	u := b.users[cred.Username]
	b.mu.Unlock()
	if u == nil || (cred.AuthzID != "" && cred.AuthzID != cred.Username) {
		return nil, pop3.ErrAuthFailed
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	want, got := u.password, cred.Password
	if cred.Mechanism == "OAUTHBEARER" || cred.Mechanism == "XOAUTH2" {
		want, got = u.token, cred.Token
	}
	if want == "" || subtle.ConstantTimeCompare([]byte(want), []byte(got)) != 1 {
		return nil, pop3.ErrAuthFailed
	}
	if u.locked {
		return nil, ErrInUse
	}
	u.locked = true
	return &session{user: u, msgs: slices.Clone(u.msgs)}, nil
}

// User is one user's maildrop. It is safe for concurrent use.
type User struct {
	mu       sync.Mutex
	password string
	token    string
	msgs     []*message
	lastUID  int
	locked   bool // a session has the maildrop
}

type message struct {
	uidl string
	data []byte
}

// SetToken sets the bearer token that OAUTHBEARER and XOAUTH2 logins must
// present; without one they are refused.
func (u *User) SetToken(token string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.token = token
}

// Append adds a message at the end of the maildrop and returns its UIDL,
// which no other message of the maildrop has or will have. Sessions open
// already do not see it. msg is kept, not copied: do not change it.
func (u *User) Append(msg []byte) (uidl string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.lastUID++
	uidl = strconv.Itoa(u.lastUID)
	u.msgs = append(u.msgs, &message{uidl: uidl, data: msg})
	return uidl
}

// Messages returns the messages in the maildrop, oldest first.
func (u *User) Messages() [][]byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([][]byte, len(u.msgs))
	for i, m := range u.msgs {
		out[i] = m.data
	}
	return out
}

// session is one login's view of a maildrop: the snapshot taken at login.
// The pop3.Server calls its methods from one goroutine at a time.
type session struct {
	user *User
	msgs []*message
}

func (s *session) Messages() []pop3.Message {
	out := make([]pop3.Message, len(s.msgs))
	for i, m := range s.msgs {
		out[i] = pop3.Message{Size: int64(len(m.data)), UIDL: m.uidl}
	}
	return out
}

func (s *session) Retrieve(_ context.Context, n int) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(s.msgs[n-1].data)), nil
}

func (s *session) Top(_ context.Context, n, lines int) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(top(s.msgs[n-1].data, lines))), nil
}

func (s *session) Retrieved(context.Context, int) {}

// Update removes the deleted messages from the maildrop.
func (s *session) Update(_ context.Context, deleted []int) error {
	gone := make(map[*message]bool, len(deleted))
	for _, n := range deleted {
		gone[s.msgs[n-1]] = true
	}
	s.user.mu.Lock()
	defer s.user.mu.Unlock()
	s.user.msgs = slices.DeleteFunc(s.user.msgs, func(m *message) bool { return gone[m] })
	return nil
}

// Close unlocks the maildrop.
func (s *session) Close() error {
	s.user.mu.Lock()
	defer s.user.mu.Unlock()
	s.user.locked = false
	return nil
}

// top returns what TOP sends of msg: its header, the empty line that ends
// it and at most lines lines of the body. A message without that empty
// line is all header.
func top(msg []byte, lines int) []byte {
	end, inBody := 0, false
	for end < len(msg) && (!inBody || lines > 0) {
		i := bytes.IndexByte(msg[end:], '\n')
		if i < 0 {
			return msg
		}
		line := msg[end : end+i+1]
		end += i + 1
		switch {
		case inBody:
			lines--
		case len(line) == 1 || (len(line) == 2 && line[0] == '\r'):
			inBody = true
		}
	}
	return msg[:end]
}
