package demo

import (
	"bytes"
	"fmt"
	"net"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// StartUpstream serves an imapmemserver with user demo/demo, an INBOX
// holding Messages and an empty Trash, on a free loopback port.
func StartUpstream() (addr string, stop func(), err error) {
	mem := imapmemserver.New()
	user := imapmemserver.NewUser("demo", "demo")
	for _, mbox := range []string{"INBOX", "Trash"} {
		if err := user.Create(mbox, nil); err != nil {
			return "", nil, fmt.Errorf("demo upstream: %w", err)
		}
	}
	for _, msg := range Messages() {
		if _, err := user.Append("INBOX", bytes.NewReader(msg), &imap.AppendOptions{}); err != nil {
			return "", nil, fmt.Errorf("demo upstream: %w", err)
		}
	}
	mem.AddUser(user)

	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		InsecureAuth: true, // loopback only
		Logger:       discardLogger{},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("demo upstream: %w", err)
	}
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close() }, nil
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
