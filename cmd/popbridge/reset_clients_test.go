package main

import (
	"net"
	"testing"

	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/internal/testenv/e2e"
)

// recreateInbox empties the INBOX, gives it a new UIDVALIDITY and APPENDs
// the same messages again in reverse order: new UIDs, a new UIDVALIDITY and
// new INTERNALDATEs, as a mailbox restored from backup or moved to another
// server would have.
func recreateInbox(t *testing.T, dv *dovecot.Server, user string, msgs []imapMsg) {
	t.Helper()
	validity, _ := imapInbox(t, dv, user)
	dv.EmptyWithNewUIDValidity(t, user, "INBOX")
	for i := len(msgs) - 1; i >= 0; i-- {
		dv.Append(t, user, "INBOX", msgs[i].Body)
	}
	if v, _ := imapInbox(t, dv, user); v == validity {
		t.Fatal("UIDVALIDITY did not change")
	}
}

// TestClientsAfterUIDValidityReset: fetchmail and mpop in keep mode have
// downloaded everything; the mailbox is re-created upstream (new
// UIDVALIDITY, new UIDs). They must download nothing again, and a message
// APPENDed after the reset exactly once.
func TestClientsAfterUIDValidityReset(t *testing.T) {
	dv := dovecot.Start(t)
	pki := e2e.NewPKI(t)
	srv := startServeAll(t, dv, pki, serveOptions{onDele: "keep"})
	for _, kind := range clientKinds {
		if kind.name != "fetchmail" && kind.name != "mpop" {
			continue
		}
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			requireCommand(t, kind.command)
			user := dovecot.User(t)
			for _, m := range initialMessages() {
				dv.Append(t, user, "INBOX", m)
			}
			host, port, _ := net.SplitHostPort(srv.Addr[modePlain])
			client := kind.setup(t, clientAccount{Mode: modePlain, Host: host, Port: port, User: user,
				Password: dv.Password, CAFile: pki.CAFile, Dir: clientDir(t)})

			_, first := imapInbox(t, dv, user)
			compareDeliveries(t, "first run", client.fetch(t), retrOf(first))
			recreateInbox(t, dv, user, first)
			compareDeliveries(t, "run after the UIDVALIDITY reset", client.fetch(t), nil)

			later := laterMessages()[0]
			dv.Append(t, user, "INBOX", later)
			_, all := imapInbox(t, dv, user)
			compareDeliveries(t, "run after one new message", client.fetch(t), retrOf(all[len(all)-1:]))
			compareDeliveries(t, "and once only", client.fetch(t), nil)
		})
	}
}
