package pop3

// Releaser is an optional interface of a Session whose Close has slow work
// left after a successful Update that the client need not wait for (a
// proxy's logout from its upstream): after Update has succeeded, the server
// calls Release, then answers QUIT with +OK, then calls Close. Release must
// give the maildrop up (its lock) as Close would, so that a client that
// reconnects at once after the +OK finds it free; Close then only frees
// what is left. Without Releaser, Close runs before the +OK.
type Releaser interface {
	Release()
}
