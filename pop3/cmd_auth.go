package pop3

import (
	"errors"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// plaintextAllowed reports whether a password may be sent on this
// connection as it is now. TLS always allows it; otherwise
// Server.AllowPlaintext decides.
func (c *conn) plaintextAllowed() bool {
	if c.info.TLS != nil || c.cfg.allowPlaintext == nil {
		return true
	}
	return c.cfg.allowPlaintext(&c.info)
}

// refusePlaintext answers USER, PASS and AUTH where plaintext login is not
// allowed, with Dovecot's wording, which clients and admins know, and says
// how to do better where it can.
func (c *conn) refusePlaintext() bool {
	if c.plaintextAllowed() {
		return false
	}
	msg := "Plaintext authentication disallowed on non-secure connections"
	if c.stlsOffered() {
		msg += "; use STLS first"
	}
	c.fail(CodeAuth, msg)
	c.badCommand()
	return true
}

func (c *conn) cmdUSER(rest string) {
	if c.refusePlaintext() {
		return
	}
	if rest == "" {
		c.fail("", "missing user name")
		c.badCommand()
		return
	}
	// Taken verbatim like PASS: the backend decides what a valid name is.
	c.user = rest
	c.ok("send PASS")
}

func (c *conn) cmdPASS(rest string) {
	if c.refusePlaintext() {
		return
	}
	if c.user == "" {
		c.fail("", "send USER first")
		c.badCommand()
		return
	}
	// RFC 1939: after a failed PASS the client starts again with USER.
	user := c.user
	c.user = ""
	if rest == "" {
		c.fail("", "missing password")
		c.badCommand()
		return
	}
	c.login(&Credentials{Mechanism: "USER", Username: user, Password: rest}, nil)
}

// login calls Backend.Login and enters TRANSACTION on success. It is shared
// by USER/PASS and AUTH. errorChallenge is the bearer mechanisms' failure
// continuation (see mechanism.errorChallenge), nil for the others. Each
// attempt logs one line, never with the password or token.
func (c *conn) login(cred *Credentials, errorChallenge []byte) {
	log := c.log.WithLazy(zap.String("user", cred.Username), zap.String("mechanism", cred.Mechanism))
	obs := c.cfg.observer
	limiter := c.cfg.limiter
	if limiter != nil {
		if ok, retry := limiter.Allow(c.info.RemoteAddr); !ok {
			log.Info("login refused: too many failed logins from this address", zap.Duration("retry_after", retry))
			if obs != nil {
				obs.Login(&c.info, LoginDelay)
				obs.ConnRefused(&c.info, RefuseLoginLimiter)
			}
			c.setEnd(EndRefused)
			c.fail(CodeLoginDelay, loginDelayText(retry))
			c.closing = true
			return
		}
	}
	// Shutdown waits for logins under way and the sessions they open;
	// none may start once it has begun.
	endSession := c.srv.beginSession()
	if endSession == nil {
		log.Info("login refused: the server is shutting down")
		if obs != nil {
			obs.Login(&c.info, LoginShuttingDown)
			obs.ConnRefused(&c.info, RefuseShuttingDown)
		}
		c.setEnd(EndShutdown)
		c.fail(CodeSysTemp, "server shutting down")
		c.closing = true
		return
	}
	defer func() {
		if c.sess == nil { // no session: nothing for Shutdown to wait for
			endSession()
		} else {
			c.endSession = endSession // until finish
		}
	}()
	c.flush() // answers to earlier pipelined commands go out before we wait
	start := time.Now()
	c.info.LoginAttempt++
	sess, err := c.loginAside(cred)
	took := zap.Duration("took", time.Since(start))
	switch {
	case err == nil && sess == nil:
		err = errors.New("pop3: Backend.Login returned neither a session nor an error")
	case err != nil && sess != nil:
		// Not the contract, but a session handed out must be closed.
		c.sess = sess
		c.closeSession()
	}
	if err != nil {
		e := asError(err)
		if e.Code == "" {
			// We announce AUTH-RESP-CODE (RFC 3206): a refusal without
			// a code of its own is a credentials problem.
			e = &Error{Code: CodeAuth, Message: e.Message, Close: e.Close, Wait: e.Wait, Err: e.Err}
		}
		if obs != nil {
			obs.Login(&c.info, loginResult(e.Code))
		}
		if e.Code != CodeAuth {
			log.Warn("login failed", zap.String("code", e.Code), zap.Error(err), took)
			c.failError(e)
			return
		}
		log.Info("login failed: bad credentials", zap.String("code", e.Code), zap.Error(err), took)
		if limiter != nil {
			limiter.Failed(c.info.RemoteAddr)
		}
		delay := c.cfg.failureDelay
		if e.Wait > 0 {
			delay = e.Wait
		}
		if !c.sleep(delay) {
			c.closing = true // the server is closing
			return
		}
		if errorChallenge != nil && !c.bearerFailure(errorChallenge) {
			return
		}
		c.failError(e)
		c.badCommand()
		return
	}

	c.sess = sess // first, so that Close is called even if Messages panics
	msgs := sess.Messages()
	if err := checkMessages(msgs); err != nil {
		// A malformed listing would corrupt the protocol (a UIDL with a
		// space or CRLF in it); refuse loudly rather than serve it.
		log.Error("backend returned an invalid maildrop listing", zap.Error(err), took)
		if obs != nil {
			obs.Login(&c.info, LoginSysPerm)
		}
		c.closeSession()
		c.setEnd(EndError)
		c.fail(CodeSysPerm, "maildrop listing is invalid")
		c.closing = true
		return
	}
	c.drop = newMaildrop(msgs)
	c.state = stateTransaction
	c.bad = 0
	if cap(c.line) > c.cfg.maxLine {
		// A long AUTH line grew it; after login lines are short again.
		// (Nothing refers to the old buffer any more: the command's
		// arguments were copied.)
		c.line = make([]byte, 0, lineInitCap)
	}
	count, size := c.drop.stat()
	c.sum.User, c.sum.Mechanism, c.sum.Listed = cred.Username, cred.Mechanism, count
	if obs != nil {
		obs.Login(&c.info, LoginOK)
	}
	log.Info("logged in", zap.Int("messages", count), zap.Int64("octets", size), took)
	c.ok(maildropText(count, size))
}

// maildropText is the answer to a login and to RSET.
func maildropText(count int, size int64) string {
	return "maildrop has " + strconv.Itoa(count) + " messages (" + strconv.FormatInt(size, 10) + " octets)"
}

// loginDelayText is the text of the LoginLimiter's refusal.
func loginDelayText(retry time.Duration) string {
	if retry <= 0 {
		return "too many failed logins, try again later"
	}
	secs := int64((retry + time.Second - 1) / time.Second)
	return "too many failed logins, try again in " + strconv.FormatInt(secs, 10) + " seconds"
}

// sleep waits for d, or reports false if the connection's context ends
// first.
func (c *conn) sleep(d time.Duration) bool {
	if d <= 0 {
		return c.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// checkMessages validates a snapshot from the backend.
func checkMessages(msgs []Message) error {
	for i, m := range msgs {
		if m.Size < 0 {
			return errors.New("message " + strconv.Itoa(i+1) + ": negative size")
		}
		if !ValidUIDL(m.UIDL) {
			return errors.New("message " + strconv.Itoa(i+1) + ": UIDL is not 1-70 octets of 0x21-0x7E")
		}
	}
	return nil
}

// cmdQUIT ends the session. In TRANSACTION it enters UPDATE: the backend
// applies the deletions, then the session is closed (releasing the maildrop
// lock) before the client gets +OK, so a client that reconnects at once
// does not find its maildrop still in use. A Releaser gives the maildrop up
// in Release instead, and is closed after the +OK.
func (c *conn) cmdQUIT(string) {
	// Arguments are ignored: refusing "QUIT x" would leave a client that
	// wants to leave stuck in the session.
	c.closing = true
	if c.state != stateTransaction {
		c.setEnd(EndQuit)
		c.ok("bye")
		return
	}
	c.state = stateUpdate
	deleted := c.drop.deleted()
	c.flush()
	err := c.sess.Update(c.ctx, deleted)
	if r, ok := c.sess.(Releaser); ok && err == nil {
		r.Release()
		c.quitOK(len(deleted))
		c.flush()
		c.closeSession()
		return
	}
	c.closeSession()
	if err != nil {
		c.setEnd(EndUpdateFailed)
		c.log.Warn("update failed", zap.Error(err), zap.Int("deleted", len(deleted)))
		c.failError(asError(err))
		return
	}
	c.quitOK(len(deleted))
}

// quitOK answers a QUIT whose UPDATE removed deleted messages.
func (c *conn) quitOK(deleted int) {
	c.setEnd(EndUpdateOK)
	c.sum.Deleted = deleted
	c.ok("bye")
}
