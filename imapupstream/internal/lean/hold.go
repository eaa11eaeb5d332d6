package lean

// Hold keeps what is written from now on until Flush, so that commands
// pipelined one behind the other leave in one write (go-imap flushes each
// command on its own). What is held must need no continuation from the
// server: nothing is sent before Flush.
func (l *Conn) Hold() {
	l.wmu.Lock()
	l.holding = true
	l.wmu.Unlock()
}

// Flush sends what was held since Hold, and ends holding.
func (l *Conn) Flush() error {
	l.wmu.Lock()
	out := l.held
	l.held, l.holding = nil, false
	l.wmu.Unlock()
	if len(out) == 0 {
		return nil
	}
	_, err := l.Conn.Write(out)
	return err
}

func (l *Conn) Write(b []byte) (int, error) {
	l.wmu.Lock()
	if l.holding {
		l.held = append(l.held, b...)
		l.wmu.Unlock()
		return len(b), nil
	}
	l.wmu.Unlock()
	return l.Conn.Write(b)
}
