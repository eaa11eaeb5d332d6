package imapupstream

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/testenv/dovecot"
)

// deleteFixture appends 4 messages; another client marks the 4th \Deleted
// (it is not ours to expunge). Returns the UIDs.
func deleteFixture(t *testing.T, e *env) []uint32 {
	t.Helper()
	var uids []uint32
	for i := range 4 {
		uids = append(uids, e.append(t, msg(fmt.Sprint("del ", i), "body")))
	}
	other := e.other(t)
	err := other.Store(imap.UIDSetNum(imap.UID(uids[3])), &imap.StoreFlags{
		Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted},
	}, nil).Close()
	if err != nil {
		t.Fatal(err)
	}
	return uids
}

func keys(m map[uint32][]imap.Flag) []uint32 {
	var out []uint32
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func methodsLogged(e *env) []string {
	var out []string
	for _, entry := range e.logs.All() {
		if m, ok := entry.ContextMap()["method"]; ok {
			out = append(out, fmt.Sprintf("%s:%v", entry.Level, m))
		}
	}
	return out
}

func TestDeleteExpunge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		opts        []dovecot.Option
		wantCmd     string
		notCmd      string
		wantMethod  string
		shielded    bool
		otherUnflag bool // no other \Deleted message
	}{
		{name: "UIDPLUS", wantCmd: "UID EXPUNGE", notCmd: "EXPUNGE\r", wantMethod: "info:uid-expunge"},
		{name: "no UIDPLUS, others deleted", opts: []dovecot.Option{dovecot.WithoutCapabilities("UIDPLUS")},
			wantCmd: "EXPUNGE", notCmd: "UID EXPUNGE", wantMethod: "warn:plain-expunge-shield", shielded: true},
		{name: "no UIDPLUS, nobody else deleted", opts: []dovecot.Option{dovecot.WithoutCapabilities("UIDPLUS")},
			wantCmd: "EXPUNGE", notCmd: "UID EXPUNGE", wantMethod: "warn:plain-expunge", otherUnflag: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.opts...)
			uids := deleteFixture(t, e)
			if tc.otherUnflag {
				other := e.other(t)
				if err := other.Store(imap.UIDSetNum(imap.UID(uids[3])), &imap.StoreFlags{
					Op: imap.StoreFlagsDel, Silent: true, Flags: []imap.Flag{imap.FlagDeleted},
				}, nil).Close(); err != nil {
					t.Fatal(err)
				}
			}
			trace := &wire{}
			c, _ := e.open(t, e.config(), trace)
			if _, err := c.Snapshot(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := c.Expunge(context.Background(), []uint32{uids[0], uids[2]}); err != nil {
				t.Fatal(err)
			}

			st := e.state(t, "INBOX")
			if got := keys(st); !slices.Equal(got, []uint32{uids[1], uids[3]}) {
				t.Fatalf("left %v, want %v", got, []uint32{uids[1], uids[3]})
			}
			if hasFlag(st[uids[1]], imap.FlagDeleted) {
				t.Fatal("a message we kept got \\Deleted")
			}
			if want := !tc.otherUnflag; hasFlag(st[uids[3]], imap.FlagDeleted) != want {
				t.Fatalf("the other client's message: flags %v", st[uids[3]])
			}

			cmds := strings.Join(trace.commands(), "\n") + "\n"
			if !strings.Contains(cmds, tc.wantCmd) || strings.Contains(strings.ReplaceAll(cmds, "\n", "\r"), tc.notCmd) {
				t.Fatalf("commands:\n%s", cmds)
			}
			if tc.name == "UIDPLUS" && !strings.Contains(cmds, fmt.Sprintf("UID EXPUNGE %d,%d", uids[0], uids[2])) {
				t.Fatalf("UID EXPUNGE not limited to ours:\n%s", cmds)
			}
			// Dovecot has CONDSTORE: the shield notes MODSEQs, the restore
			// is conditional on them.
			if tc.shielded && !strings.Contains(cmds, fmt.Sprintf("UID STORE %d (UNCHANGEDSINCE %d) -FLAGS.SILENT (\\Deleted)", uids[3], uint64(math.MaxInt64))) {
				t.Fatalf("no shielding:\n%s", cmds)
			}
			if tc.shielded && !regexp.MustCompile(fmt.Sprintf(`UID STORE %d \(UNCHANGEDSINCE [1-9][0-9]*\) \+FLAGS\.SILENT`, uids[3])).MatchString(cmds) {
				t.Fatalf("no conditional restore:\n%s", cmds)
			}
			if got := methodsLogged(e); !slices.Contains(got, tc.wantMethod) {
				t.Fatalf("methods logged %v, want %s", got, tc.wantMethod)
			}

			// A retry (after a failure in UPDATE) finishes quietly.
			if err := c.Expunge(context.Background(), []uint32{uids[0], uids[2]}); err != nil {
				t.Fatalf("retry: %v", err)
			}
			if got := keys(e.state(t, "INBOX")); !slices.Equal(got, []uint32{uids[1], uids[3]}) {
				t.Fatalf("after retry left %v", got)
			}
		})
	}
}

func TestDeleteTrash(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		opts       []dovecot.Option
		wantCmds   []string
		notCmds    []string
		wantMethod string
	}{
		{name: "MOVE", wantCmds: []string{"UID MOVE", `CREATE "Trash"`}, notCmds: []string{"COPY", "EXPUNGE"},
			wantMethod: "info:uid-move"},
		{name: "no MOVE", opts: []dovecot.Option{dovecot.WithoutCapabilities("MOVE")},
			wantCmds: []string{"UID COPY", "UID EXPUNGE"}, notCmds: []string{"MOVE"}, wantMethod: "info:uid-copy+uid-expunge"},
		{name: "no MOVE, no UIDPLUS", opts: []dovecot.Option{dovecot.WithoutCapabilities("MOVE", "UIDPLUS")},
			wantCmds: []string{"UID COPY", "UID SEARCH"}, notCmds: []string{"MOVE", "UID EXPUNGE"},
			wantMethod: "info:uid-copy+plain-expunge-shield"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.opts...)
			uids := deleteFixture(t, e)
			trace := &wire{}
			c, _ := e.open(t, e.config(), trace)
			if err := c.Move(context.Background(), []uint32{uids[1], uids[2]}, "Trash"); err != nil {
				t.Fatal(err)
			}
			if got := keys(e.state(t, "INBOX")); !slices.Equal(got, []uint32{uids[0], uids[3]}) {
				t.Fatalf("INBOX left %v", got)
			}
			trash := e.state(t, "Trash")
			if len(trash) != 2 {
				t.Fatalf("Trash has %d messages", len(trash))
			}
			for uid, flags := range trash {
				if hasFlag(flags, imap.FlagDeleted) {
					t.Fatalf("Trash UID %d is \\Deleted", uid)
				}
			}
			cmds := strings.Join(trace.commands(), "\n")
			for _, want := range tc.wantCmds {
				if !strings.Contains(cmds, want) {
					t.Fatalf("no %q in:\n%s", want, cmds)
				}
			}
			for _, not := range tc.notCmds {
				if strings.Contains(cmds, not) && !(not == "EXPUNGE" && !strings.Contains(cmds, "EXPUNGE")) {
					t.Fatalf("%q in:\n%s", not, cmds)
				}
			}
			if got := methodsLogged(e); !slices.Contains(got, tc.wantMethod) {
				t.Fatalf("methods logged %v, want %s", got, tc.wantMethod)
			}
			// The Trash exists now: a second delete needs no CREATE.
			if err := c.Move(context.Background(), []uint32{uids[0]}, "Trash"); err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(strings.Join(trace.commands(), "\n"), "CREATE"); n > 1 {
				t.Fatalf("%d CREATEs", n)
			}
		})
	}
}

// TestDeleteNothingAndErrors: no UIDs send nothing; a Move to no mailbox,
// or to the mailbox itself, is refused. (Keeping the messages, policy
// on_dele keep, is the proxy's: it calls neither.)
func TestDeleteNothingAndErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	uids := deleteFixture(t, e)
	trace := &wire{}
	c, _ := e.open(t, e.config(), trace)
	before := len(trace.commands())
	if err := c.Expunge(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Move(context.Background(), nil, "Trash"); err != nil {
		t.Fatal(err)
	}
	if after := len(trace.commands()); after != before {
		t.Fatalf("nothing sent commands: %q", trace.commands()[before:])
	}
	if len(e.state(t, "INBOX")) != 4 {
		t.Fatal("nothing changed the mailbox")
	}
	for _, bad := range []string{"", "inbox"} {
		if err := c.Move(context.Background(), uids[:1], bad); !errors.Is(err, ErrConfig) {
			t.Fatalf("%q: %v", bad, err)
		}
	}
	if len(e.state(t, "INBOX")) != 4 {
		t.Fatal("a refused delete changed the mailbox")
	}
}
