// Package watchdog bounds blocking calls on a connection: a Guard ends the
// connection when its context is done, or when the server makes no
// progress for a period while someone waits on it; the blocked call then
// returns, and the caller reports the cause.
package watchdog
