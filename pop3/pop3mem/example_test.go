package pop3mem_test

import (
	"fmt"
	"log"
	"net"
	"net/textproto"
	"strings"

	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/pop3/pop3mem"
)

// Serve a maildrop from memory on a loopback port and read it with a few
// raw POP3 commands.
func Example() {
	mem := pop3mem.New()
	alice := mem.AddUser("alice", "secret")
	alice.Append([]byte("Subject: hello\r\n\r\nHi Alice!\r\n"))
	alice.Append([]byte("Subject: dots\r\n\r\n.a line that starts with a dot\r\n"))

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &pop3.Server{Backend: mem}
	go srv.Serve(l)
	defer srv.Close()

	c, err := textproto.Dial("tcp", l.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	greeting, _ := c.ReadLine()
	fmt.Println(greeting)
	for _, cmd := range []string{"USER alice", "PASS secret", "LIST", "UIDL", "RETR 2", "DELE 1", "QUIT"} {
		fmt.Println(">", cmd)
		c.PrintfLine("%s", cmd)
		status, err := c.ReadLine()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(status)
		if strings.HasPrefix(status, "+OK") && (cmd == "LIST" || cmd == "UIDL" || strings.HasPrefix(cmd, "RETR")) {
			lines, _ := c.ReadDotLines() // undoes the dot-stuffing
			fmt.Printf("%q\n", lines)
		}
	}
	fmt.Println("messages left:", len(alice.Messages()))

	// Output:
	// +OK POP3 server ready
	// > USER alice
	// +OK send PASS
	// > PASS secret
	// +OK maildrop has 2 messages (78 octets)
	// > LIST
	// +OK 2 messages (78 octets)
	// ["1 29" "2 49"]
	// > UIDL
	// +OK unique-id listing follows
	// ["1 1" "2 2"]
	// > RETR 2
	// +OK 49 octets
	// ["Subject: dots" "" ".a line that starts with a dot"]
	// > DELE 1
	// +OK message 1 deleted
	// > QUIT
	// +OK bye
	// messages left: 1
}
