package imapupstream

import "time"

// Observer is told of upstream latencies and failures, for metrics. Its
// methods are called from many sessions' goroutines at once and must return
// quickly. A nil Config.Observer costs nothing.
type Observer interface {
	// LoginDone: Dialer.Login ended, after d (dial, TLS, greeting and
	// login), with err nil or an error of this package (ErrAuthFailed
	// included: the credentials were refused).
	LoginDone(d time.Duration, err error)
	// CommandDone: a Conn operation ended after d: op is one of select,
	// snapshot, identify, fetch, top, mark_seen, add_keyword,
	// search_keyword, delete (Expunge and Move). For fetch and top, d runs
	// until the message starts to arrive (the reader is returned); a
	// failure while it streams is reported by StreamFailed.
	CommandDone(op string, d time.Duration, err error)
	// StreamFailed: a message being read (Fetch, Top) broke off.
	StreamFailed(err error)
}

// observeCommand reports one operation; it is deferred with the time the
// operation started and a pointer to its error result.
func observeCommand(o Observer, op string, start time.Time, err *error) {
	o.CommandDone(op, time.Since(start), *err)
}
