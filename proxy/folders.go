package proxy

import (
	"context"
	"errors"
	"hash/fnv"
	"io"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/uidmap"
)

// One POP3 maildrop of several mailboxes (policy.folders: [INBOX, Junk]).
// Each folder is a session of its own: its own upstream connection with
// the folder selected, its own state in uidmap (Key.Mailbox is the folder),
// its own lock; a folderSession numbers their messages one after the
// other and sends each command to the message's folder. A message that
// moves from one listed folder to another keeps its UIDL (its record in
// the folder it left is adopted by fingerprint, uidmap.ResolveAdopting);
// the new UIDLs of folders after the first end in a suffix of the
// folder's, so that no two folders name two messages alike.

// forFolder returns o for folder i of o.Folders: its dialer SELECTs the
// folder, the folder names its state, and after the first folder new
// UIDLs carry the folder's suffix.
func (o *Options) forFolder(i int, folder string) *Options {
	fo := *o
	fo.Dialer = o.Dialer.WithMailbox(folder)
	fo.Mailbox = folder
	fo.Folders = nil
	if i > 0 {
		fo.Map = o.Map.WithUIDLSuffix(folderSuffix(folder))
	}
	return &fo
}

// folderSuffix is what ends the new UIDLs of a folder after the first: a
// hash of its name, stable across sessions and instances.
func folderSuffix(folder string) string {
	h := fnv.New32a()
	h.Write([]byte(folder))
	return "-" + strconv.FormatUint(uint64(h.Sum32()), 36)
}

// loginFolders opens one session per folder for login a and makes them one
// maildrop. Folders are snapshotted first and named after, so that a
// message that left one folder can be recognised in another.
func (b *Backend) loginFolders(ctx context.Context, ci *pop3.ConnInfo, a *authenticated, start time.Time) (_ pop3.Session, err error) {
	folders := a.opts.Folders
	fs := &folderSession{parts: make([]*session, 0, len(folders))}
	defer func() {
		if err != nil {
			fs.Close()
		}
	}()
	mds := make([]*Maildrop, len(folders))
	for i, f := range folders {
		fo := a.opts.forFolder(i, f)
		conn, err := a.dial(ctx, fo.Dialer)
		if err != nil {
			return nil, clientError(err)
		}
		if i == 0 {
			a.warnUnmet(conn)
		}
		s := newSession(ci.ID, fo, conn, a)
		s.log = s.log.With(zap.String("folder", f))
		fs.parts = append(fs.parts, s)
		if err := b.claim(ctx, s, i == 0); err != nil {
			return nil, err
		}
		if mds[i], err = snapshotMaildrop(ctx, conn, fo.Key(a.upCred.Username), &b.snaps); err != nil {
			return nil, clientError(err)
		}
	}
	// The records of messages that left a folder since its last session:
	// one of them may be a new message of another folder.
	var donors []uidmap.Record
	for i, md := range mds {
		gone, err := fs.parts[i].opts.Map.Vanished(ctx, md.Key, md.UIDValidity, md.Messages)
		if err != nil {
			return nil, clientError(err)
		}
		donors = append(donors, gone...)
	}
	for i, md := range mds {
		s := fs.parts[i]
		if err := md.Name(ctx, s.opts.Map, donors); err != nil {
			return nil, clientError(err)
		}
		// A UIDL now taken here is no other folder's to adopt.
		taken := make(map[string]bool, len(md.View.UIDLs))
		for _, u := range md.View.UIDLs {
			taken[u] = true
		}
		kept := donors[:0]
		for _, r := range donors {
			if !taken[r.UIDL] {
				kept = append(kept, r)
			}
		}
		donors = kept
		if err := s.view(ctx, md); err != nil {
			return nil, err
		}
	}
	fs.number(a.log)
	if a.opts.LoginDelay > 0 {
		b.recordLogin(ctx, fs.parts[0].opts, fs.parts[0].key, a.log)
	}
	a.log.Info("login", zap.Strings("folders", folders), zap.Int("messages", len(fs.msgs)), zap.Duration("took", time.Since(start)))
	return fs, nil
}

// folderSession is one POP3 maildrop made of the sessions of several
// folders.
type folderSession struct {
	parts []*session
	msgs  []pop3.Message
	where []msgRef // of message n at where[n-1]
}

// msgRef is message n of parts[part].
type msgRef struct{ part, n int }

var (
	_ pop3.Session         = (*folderSession)(nil)
	_ pop3.RetrieveAheader = (*folderSession)(nil)
)

// number lists the folders' messages one folder after the other. A UIDL
// seen in an earlier folder (which the suffixes and the adoption rule out,
// but state could be tampered with) is left out rather than served twice.
func (fs *folderSession) number(log *zap.Logger) {
	seen := make(map[string]bool)
	for p, s := range fs.parts {
		for i, m := range s.messages {
			if seen[m.UIDL] {
				log.Error("a UIDL of two folders: the second message is not listed", zap.String("uidl", m.UIDL),
					zap.String("folder", s.opts.Mailbox))
				continue
			}
			seen[m.UIDL] = true
			fs.msgs = append(fs.msgs, m)
			fs.where = append(fs.where, msgRef{part: p, n: i + 1})
		}
	}
}

func (fs *folderSession) Messages() []pop3.Message { return fs.msgs }

func (fs *folderSession) at(n int) (*session, int) {
	r := fs.where[n-1]
	return fs.parts[r.part], r.n
}

func (fs *folderSession) Retrieve(ctx context.Context, n int) (io.ReadCloser, error) {
	s, k := fs.at(n)
	return s.Retrieve(ctx, k)
}

// RetrieveAhead fetches ahead within the message's folder only: the next
// message of another folder comes over another connection.
func (fs *folderSession) RetrieveAhead(ctx context.Context, n, next int) (io.ReadCloser, error) {
	s, k := fs.at(n)
	if next > 0 {
		if ns, nk := fs.at(next); ns == s {
			return s.RetrieveAhead(ctx, k, nk)
		}
	}
	return s.Retrieve(ctx, k)
}

func (fs *folderSession) Top(ctx context.Context, n, lines int) (io.ReadCloser, error) {
	s, k := fs.at(n)
	return s.Top(ctx, k, lines)
}

func (fs *folderSession) Retrieved(ctx context.Context, n int) {
	s, k := fs.at(n)
	s.Retrieved(ctx, k)
}

// Update applies each folder's deletions in its own session. A folder
// whose UPDATE fails does not stop the others'; the client is told of the
// first failure, so it reports nothing deleted: at worst it deletes again
// what another folder already removed.
func (fs *folderSession) Update(ctx context.Context, deleted []int) error {
	byPart := make([][]int, len(fs.parts))
	for _, n := range deleted {
		r := fs.where[n-1]
		byPart[r.part] = append(byPart[r.part], r.n)
	}
	var first error
	for p, s := range fs.parts {
		if err := s.Update(ctx, byPart[p]); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (fs *folderSession) Close() error {
	var errs []error
	for _, s := range fs.parts {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}
