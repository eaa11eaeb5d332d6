package pop3

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// goneBackend serves one endless message and reports, when its reader is
// closed, whether the context of the Retrieve call had ended by then.
type goneBackend struct{ closedWithCtxDone chan bool }

func (b *goneBackend) Login(context.Context, *ConnInfo, *Credentials) (Session, error) {
	return goneSession{b}, nil
}

type goneSession struct{ b *goneBackend }

func (goneSession) Messages() []Message { return []Message{{Size: 1 << 40, UIDL: "endless"}} }
func (s goneSession) Retrieve(ctx context.Context, _ int) (io.ReadCloser, error) {
	return &goneReader{ctx: ctx, b: s.b}, nil
}
func (goneSession) Top(context.Context, int, int) (io.ReadCloser, error) {
	return nil, errors.New("no TOP")
}
func (goneSession) Retrieved(context.Context, int)      {}
func (goneSession) Update(context.Context, []int) error { return nil }
func (goneSession) Close() error                        { return nil }

type goneReader struct {
	ctx context.Context
	b   *goneBackend
}

func (r *goneReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
		if i%78 == 77 {
			p[i-1], p[i] = '\r', '\n'
		}
	}
	return len(p), nil
}

func (r *goneReader) Close() error {
	r.b.closedWithCtxDone <- r.ctx.Err() != nil
	return nil
}

// TestClientGoneCancelsRetrieve: when the client goes away in the middle of
// a message, the backend's context ends before its reader is closed, so a
// backend that would otherwise read the rest of the message (to keep its
// upstream connection usable) gives up at once instead of doing so for
// nobody while it holds the maildrop.
func TestClientGoneCancelsRetrieve(t *testing.T) {
	b := &goneBackend{closedWithCtxDone: make(chan bool, 1)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Backend: b, Logger: zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(nc)
	io.WriteString(nc, "USER a\r\nPASS b\r\nRETR 1\r\n")
	for range 4 { // greeting, USER, PASS, RETR
		if line, err := br.ReadString('\n'); err != nil || line[0] != '+' {
			t.Fatalf("%q, %v", line, err)
		}
	}
	if _, err := io.ReadFull(br, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	select {
	case done := <-b.closedWithCtxDone:
		if !done {
			t.Fatal("the message reader was closed while the context of the gone client's RETR was still live")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the message reader was never closed")
	}
}
