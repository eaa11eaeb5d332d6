package imapupstream

import (
	"context"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testenv/dovecot"
)

// TestFetchOverTLS: over implicit TLS and STARTTLS, Fetch takes the
// connection from go-imap's reader (interrupting its read of the TLS
// stream) and gives it back, as often as it likes: the messages stream
// exactly and go-imap's commands work in between.
func TestFetchOverTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dovecot.WithTLS())
	big := "Subject: big\r\n\r\n" + strings.Repeat(".a line of a big message over TLS\r\n", 9000)
	msgs := []string{msg("one", "first"), big, msg("three", "last")}
	var uids []uint32
	for _, m := range msgs {
		uids = append(uids, e.append(t, m))
	}
	for _, cfg := range []Config{
		{Address: e.srv.IMAPSAddr, TLS: TLSImplicit, CAFile: e.srv.CAFile},
		{Address: e.srv.IMAPAddr, TLS: TLSStartTLS, CAFile: e.srv.CAFile},
	} {
		t.Run(string(cfg.TLS), func(t *testing.T) {
			d := e.dialer(t, cfg, nil)
			c, err := d.Login(context.Background(), Credentials{Username: e.user, Password: e.srv.Password})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			for round := range 2 {
				if _, err := c.Select(ctx); err != nil { // go-imap's, between takes
					t.Fatalf("round %d: Select: %v", round, err)
				}
				for i, uid := range uids {
					r, err := c.FetchAhead(ctx, e.meta(uid), uids[i+1:]...)
					if err != nil {
						t.Fatalf("round %d: FetchAhead %d: %v", round, uid, err)
					}
					got, err := readAll(t, r, 16<<10)
					if err != nil || string(got) != msgs[i] {
						t.Fatalf("round %d: message %d: %d octets of %d, %v", round, i, len(got), len(msgs[i]), err)
					}
				}
			}
		})
	}
}
