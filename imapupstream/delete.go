package imapupstream

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"go.uber.org/zap"

	"github.com/popbridge/popbridge/imapupstream/internal/watchdog"
)

// How Expunge and Move removed messages, as logged in the field "method".
const (
	methodUIDExpunge   = "uid-expunge"          // UID STORE \Deleted + UID EXPUNGE (UIDPLUS)
	methodMove         = "uid-move"             // UID MOVE (MOVE)
	methodPlainExpunge = "plain-expunge"        // no UIDPLUS, and no other message was \Deleted
	methodShieldOthers = "plain-expunge-shield" // no UIDPLUS: others' \Deleted cleared around EXPUNGE
	methodCopyPrefix   = "uid-copy+"            // Move without MOVE: UID COPY, then one of the above
)

// maxShieldRounds bounds the UID SEARCH DELETED rounds of expungeShielded.
const maxShieldRounds = 3

const (
	logDeleteMsg       = "upstream messages deleted"
	logFallbackMsg     = "upstream lacks UIDPLUS: expunging with plain EXPUNGE"
	logShieldLostFlags = "could not restore \\Deleted on other clients' messages after EXPUNGE"
)

// Expunge removes the messages, and only those: UID STORE +FLAGS.SILENT
// (\Deleted), then UID EXPUNGE of exactly these UIDs (UIDPLUS). Without
// UIDPLUS it never sends a bare EXPUNGE while another message carries
// \Deleted: it looks for them (UID SEARCH DELETED), clears their \Deleted,
// sends EXPUNGE, and sets \Deleted on them again (see expungeShielded for
// why, and the limits).
//
// UIDs that no longer exist are ignored, so a retry after a failure finishes
// the job. Long UID lists are split into several commands.
func (c *Conn) Expunge(ctx context.Context, uids []uint32) (err error) {
	if o := c.cfg.Observer; o != nil {
		defer observeCommand(o, "delete", time.Now(), &err)
	}
	g, sorted, err := c.beginDelete(ctx, "delete (expunge)", uids)
	if g == nil {
		return err
	}
	defer g.Stop()
	method, err := c.expunge(g, sorted)
	if err != nil {
		return err
	}
	c.log.Info(logDeleteMsg, zap.String("method", method), zap.Int("count", len(sorted)))
	return nil
}

// Move moves the messages to mailbox, which must not be the selected one:
// UID MOVE when MOVE is advertised; otherwise UID COPY, then as Expunge.
// The mailbox is created when the server answers [TRYCREATE]. As with
// Expunge, UIDs that no longer exist are ignored and long UID lists are
// split.
func (c *Conn) Move(ctx context.Context, uids []uint32, mailbox string) (err error) {
	if o := c.cfg.Observer; o != nil {
		defer observeCommand(o, "delete", time.Now(), &err)
	}
	if mailbox == "" {
		return fmt.Errorf("%w: Move needs a mailbox to move to", ErrConfig)
	}
	if sameMailbox(mailbox, c.cfg.Mailbox) {
		return fmt.Errorf("%w: cannot move to %q: it is the mailbox itself", ErrConfig, mailbox)
	}
	g, sorted, err := c.beginDelete(ctx, "delete (move)", uids)
	if g == nil {
		return err
	}
	defer g.Stop()
	if mailbox, err = c.inPersonalNamespace(mailbox); err != nil {
		return err
	}
	// Decide on MOVE with go-imap's own view of the capabilities: its Move
	// falls back to a bare EXPUNGE without MOVE, which we must not send.
	if c.client.Caps().Has(imap.CapMove) {
		if err := c.move(g, sorted, mailbox); err != nil {
			return err
		}
		// The field keeps its name from when Move was the trash policy's.
		c.log.Info(logDeleteMsg, zap.String("method", methodMove), zap.String("trash", mailbox),
			zap.Int("count", len(sorted)))
		return nil
	}
	if err := c.copyTo(g, sorted, mailbox); err != nil {
		return err
	}
	method, err := c.expunge(g, sorted)
	if err != nil {
		return err
	}
	c.log.Info(logDeleteMsg, zap.String("method", methodCopyPrefix+method), zap.Int("count", len(sorted)))
	return nil
}

// beginDelete starts Expunge or Move (op) of uids: it returns the guard for
// their commands and the UIDs sorted, or a nil guard when there is nothing
// to do (no UIDs: err is nil) or the connection cannot do it.
func (c *Conn) beginDelete(ctx context.Context, op string, uids []uint32) (*watchdog.Guard, []uint32, error) {
	if err := c.begin(op); err != nil {
		return nil, nil, err
	}
	if c.mbox == nil {
		return nil, nil, fmt.Errorf("imapupstream: %s before Select", op)
	}
	sorted := sortUIDs(uids)
	if len(sorted) == 0 {
		return nil, nil, nil
	}
	return c.guard(ctx, c.cfg.CommandTimeout), sorted, nil
}

// inPersonalNamespace names mailbox as the server's personal namespace
// has it: Courier (and Cyrus without altnamespace) keep every mailbox of
// the user under "INBOX.", where "Trash" is not a valid name but
// "INBOX.Trash" is. A name that is INBOX, already carries the prefix, or
// a server without NAMESPACE (or without a prefix) leaves it as it is.
func (c *Conn) inPersonalNamespace(mailbox string) (string, error) {
	if strings.EqualFold(mailbox, "INBOX") || !c.client.Caps().Has(imap.CapNamespace) {
		return mailbox, nil
	}
	ns, err := c.client.Namespace().Wait()
	if err != nil {
		return "", c.fail("NAMESPACE", err)
	}
	if len(ns.Personal) == 0 {
		return mailbox, nil
	}
	prefix := ns.Personal[0].Prefix
	if prefix == "" || strings.HasPrefix(strings.ToUpper(mailbox), strings.ToUpper(prefix)) {
		return mailbox, nil
	}
	c.log.Debug("mailbox named in the personal namespace", zap.String("mailbox", mailbox), zap.String("as", prefix+mailbox))
	return prefix + mailbox, nil
}

func sameMailbox(a, b string) bool {
	if strings.EqualFold(a, "INBOX") && strings.EqualFold(b, "INBOX") {
		return true
	}
	return a == b
}

// withTryCreate runs cmd; when the server answers NO [TRYCREATE] it creates
// the mailbox and runs cmd once more.
func (c *Conn) withTryCreate(g *watchdog.Guard, mailbox string, cmd func() error) error {
	err := cmd()
	var imapErr *imap.Error
	if err == nil || !errors.As(err, &imapErr) || imapErr.Code != imap.ResponseCodeTryCreate {
		return err
	}
	g.Progress()
	if cerr := c.client.Create(mailbox, nil).Wait(); cerr != nil {
		var ce *imap.Error
		if !errors.As(cerr, &ce) || ce.Code != imap.ResponseCodeAlreadyExists {
			return c.fail("CREATE", cerr)
		}
	}
	c.log.Info("upstream mailbox created", zap.String("mailbox", mailbox))
	g.Progress()
	return cmd()
}

// move runs UID MOVE, one command per UID set.
func (c *Conn) move(g *watchdog.Guard, sorted []uint32, mailbox string) error {
	const op = "UID MOVE"
	for _, set := range uidSets(sorted) {
		g.Progress()
		err := c.withTryCreate(g, mailbox, func() error {
			_, err := c.client.Move(set, mailbox).Wait()
			return err
		})
		if err != nil {
			return c.fail(op, err)
		}
	}
	return nil
}

// copyTo runs UID COPY, one command per UID set.
func (c *Conn) copyTo(g *watchdog.Guard, sorted []uint32, mailbox string) error {
	const op = "UID COPY"
	for _, set := range uidSets(sorted) {
		g.Progress()
		err := c.withTryCreate(g, mailbox, func() error {
			_, err := c.client.Copy(set, mailbox).Wait()
			return err
		})
		if err != nil {
			return c.fail(op, err)
		}
	}
	return nil
}

// expunge removes exactly the sorted UIDs and says how.
func (c *Conn) expunge(g *watchdog.Guard, sorted []uint32) (method string, err error) {
	if err := c.storeFlags(g, `UID STORE +FLAGS.SILENT (\Deleted)`, sorted, imap.StoreFlagsAdd, imap.FlagDeleted); err != nil {
		return "", err
	}
	if c.client.Caps().Has(imap.CapUIDPlus) {
		for _, set := range uidSets(sorted) {
			g.Progress()
			if err := c.client.UIDExpunge(set).Close(); err != nil {
				return "", c.fail("UID EXPUNGE", err)
			}
		}
		return methodUIDExpunge, nil
	}
	return c.expungeShielded(g, sorted)
}

// expungeShielded expunges the sorted UIDs (already \Deleted) on a server
// without UIDPLUS, where the only way is a plain EXPUNGE, which removes every
// \Deleted message of the mailbox, including other clients' ones.
//
// Method: UID SEARCH DELETED. If only our messages carry \Deleted, EXPUNGE.
// Otherwise clear \Deleted on the others ("shield" them), search again until
// only ours are left (another client may be flagging meanwhile; we give up
// after a few rounds), EXPUNGE, then set \Deleted on the shielded messages
// again, even if EXPUNGE failed. With CONDSTORE the restore is conditional
// (UNCHANGEDSINCE the shield's own MODSEQ), so that a message another client
// changed meanwhile (undeleted, say) keeps that change.
//
// Why this one: the other methods lose mail or do not delete. Refusing to
// expunge would leave our messages in place although the POP3 client was
// told they are deleted; a bare EXPUNGE would destroy messages another
// client only marked (and may still undelete). Shielding keeps both promises.
//
// The result is what happened to our messages: after the EXPUNGE, and
// before the restore, a UID SEARCH checks that none of them is left
// (another client may have cleared their \Deleted meanwhile); a failed
// restore, which concerns only other clients' flags, is logged, not
// returned. What can still go
// wrong: (a) if the connection dies between clearing and restoring, the
// shielded messages keep living without their \Deleted flag — they
// reappear, nothing is lost, and we log their UIDs; (b) a message that
// another client flags \Deleted in the one round trip between our last
// SEARCH and the EXPUNGE is expunged with ours — which is what \Deleted asks
// of any EXPUNGE, and the window is as small as the protocol allows without
// UIDPLUS. Two popbridge sessions must not run this at once on one mailbox
// (their shields would undo each other): the proxy serialises them.
func (c *Conn) expungeShielded(g *watchdog.Guard, sorted []uint32) (method string, err error) {
	var shielded []shield
	clean := false
	for round := 0; round < maxShieldRounds; round++ {
		g.Progress()
		deleted, err := c.searchDeleted()
		if err != nil {
			c.restoreShielded(g, shielded)
			return "", err
		}
		others := notIn(deleted, sorted)
		if len(others) == 0 {
			clean = true
			break
		}
		sh, err := c.shieldFlags(g, others)
		if err != nil {
			c.restoreShielded(g, append(shielded, shield{uids: others}))
			return "", err
		}
		shielded = append(shielded, sh)
	}
	if !clean {
		c.restoreShielded(g, shielded)
		return "", fmt.Errorf("imapupstream: no UIDPLUS and other messages keep getting \\Deleted; not sending EXPUNGE")
	}

	method = methodPlainExpunge
	n := 0
	for _, sh := range shielded {
		n += len(sh.uids)
	}
	if n > 0 {
		method = methodShieldOthers
	}
	c.log.Warn(logFallbackMsg, zap.String("method", method), zap.Int("count", len(sorted)),
		zap.Int("shielded", n))
	g.Progress()
	expErr := c.client.Expunge().Close()
	if expErr != nil {
		expErr = c.fail("EXPUNGE", expErr)
	}
	// Checked before the restore, which concerns only other clients'
	// flags: its failure (logged) changes nothing of the result.
	var left []uint32
	if expErr == nil {
		left, expErr = c.searchUIDs(sorted)
	}
	c.restoreShielded(g, shielded)
	if expErr != nil {
		return "", expErr
	}
	if len(left) > 0 {
		return "", fmt.Errorf("imapupstream: EXPUNGE left %d of the deleted messages in place (UIDs %v): another client cleared their \\Deleted",
			len(left), left)
	}
	return method, nil
}

// shield is one round of others' messages whose \Deleted was cleared, and
// the highest MODSEQ the clearing gave them (0 without CONDSTORE).
type shield struct {
	uids   []uint32
	modSeq uint64
}

// noModSeqLimit is an UNCHANGEDSINCE that every message passes: it makes a
// STORE report each message's new MODSEQ (RFC 7162 3.2), even SILENT.
const noModSeqLimit = math.MaxInt64

// shieldFlags clears \Deleted on uids (sorted), noting the MODSEQ it gave
// them where the server has CONDSTORE.
func (c *Conn) shieldFlags(g *watchdog.Guard, uids []uint32) (shield, error) {
	const op = `UID STORE -FLAGS.SILENT (\Deleted)`
	sh := shield{uids: uids}
	if !c.caps.CondStore {
		return sh, c.storeFlags(g, op, uids, imap.StoreFlagsDel, imap.FlagDeleted)
	}
	for _, set := range uidSets(uids) {
		g.Progress()
		msgs, err := c.client.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsDel, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}},
			&imap.StoreOptions{UnchangedSince: noModSeqLimit}).Collect()
		if err != nil {
			return sh, c.fail(op, err)
		}
		for _, m := range msgs {
			sh.modSeq = max(sh.modSeq, m.ModSeq)
		}
	}
	return sh, nil
}

// restoreShielded sets \Deleted again on the messages whose flag we cleared;
// with a MODSEQ, only on those that nobody changed since. A failure is
// logged with the UIDs whose flag it could not restore.
func (c *Conn) restoreShielded(g *watchdog.Guard, shielded []shield) {
	const op = `UID STORE +FLAGS.SILENT (\Deleted)`
	for _, sh := range shielded {
		var opts *imap.StoreOptions
		if sh.modSeq > 0 {
			opts = &imap.StoreOptions{UnchangedSince: sh.modSeq}
		}
		for _, set := range uidSets(sh.uids) {
			g.Progress()
			err := c.client.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, opts).Close()
			if err != nil {
				c.log.Error(logShieldLostFlags, zap.Uint32s("uids", sh.uids), zap.Error(c.fail(op, err)))
				break
			}
		}
	}
}

// searchUIDs returns which of the sorted UIDs are still in the mailbox.
func (c *Conn) searchUIDs(sorted []uint32) ([]uint32, error) {
	var left []uint32
	for _, set := range uidSets(sorted) {
		data, err := c.client.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{set}}, nil).Wait()
		if err != nil {
			return nil, c.fail("UID SEARCH UID", err)
		}
		for _, u := range data.AllUIDs() {
			left = append(left, uint32(u))
		}
	}
	return left, nil
}

// searchDeleted returns the UIDs of all \Deleted messages, sorted.
func (c *Conn) searchDeleted() ([]uint32, error) {
	data, err := c.client.UIDSearch(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagDeleted}}, nil).Wait()
	if err != nil {
		return nil, c.fail("UID SEARCH DELETED", err)
	}
	uids := data.AllUIDs()
	out := make([]uint32, len(uids))
	for i, u := range uids {
		out[i] = uint32(u)
	}
	slices.Sort(out)
	return out, nil
}

// notIn returns the elements of a (sorted) that are not in b (sorted).
func notIn(a, b []uint32) []uint32 {
	var out []uint32
	for _, x := range a {
		if _, found := slices.BinarySearch(b, x); !found {
			out = append(out, x)
		}
	}
	return out
}
