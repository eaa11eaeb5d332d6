package pop3client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"time"

	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/pop3/pop3client"
	"github.com/popbridge/popbridge/pop3/pop3mem"
)

// exampleServer serves alice's maildrop (password secret) from memory on a
// loopback port and returns its address and a function that stops it.
func exampleServer(msgs ...string) (addr string, stop func()) {
	mem := pop3mem.New()
	alice := mem.AddUser("alice", "secret")
	for _, m := range msgs {
		alice.Append([]byte(m))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &pop3.Server{Backend: mem}
	go srv.Serve(l)
	return l.Addr().String(), func() { srv.Close() }
}

// Log in, list the maildrop and download it: small messages whole, and a
// message streamed to its destination without holding it.
func Example() {
	addr, stop := exampleServer(
		"Subject: hello\r\n\r\nHi Alice!\r\n",
		"Subject: dots\r\n\r\n.a line that starts with a dot\r\n",
	)
	defer stop()

	c, err := pop3client.DialContext(context.Background(), addr, &pop3client.Options{Timeout: 10 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	caps, err := c.Capa()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("UIDL offered:", caps.Has("UIDL"))
	if err := c.Login("alice", "secret"); err != nil {
		log.Fatal(err)
	}
	count, size, err := c.Stat()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d messages, %d octets\n", count, size)
	uidls, err := c.Listing("UIDL")
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range uidls {
		fmt.Printf("message %d: UIDL %s\n", e.N, e.Value)
	}
	msg, err := c.Retr(2) // the dot-stuffing undone
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q\n", msg)
	r, err := c.RetrReader(1)
	if err != nil {
		log.Fatal(err)
	}
	n, err := io.Copy(io.Discard, r) // or to a file, however big
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("message 1: %d octets streamed\n", n)
	if err := c.Quit(); err != nil {
		log.Fatal(err)
	}

	// Output:
	// UIDL offered: true
	// 2 messages, 78 octets
	// message 1: UIDL 1
	// message 2: UIDL 2
	// "Subject: dots\r\n\r\n.a line that starts with a dot\r\n"
	// message 1: 29 octets streamed
}

// A -ERR answer is an *ErrResponse, with its RFC 2449 response code.
func ExampleErrResponse() {
	addr, stop := exampleServer()
	defer stop()

	c, err := pop3client.Dial(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	err = c.Login("alice", "guessed")
	var resp *pop3client.ErrResponse
	if errors.As(err, &resp) {
		fmt.Println(resp.Command, resp.Code())
	}
	fmt.Println(err)

	// Output:
	// PASS AUTH
	// PASS: the server answered "-ERR [AUTH] authentication failed"
}
