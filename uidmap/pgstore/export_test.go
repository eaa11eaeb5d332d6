package pgstore

// Abandon stops the Store as a crashed instance would: no more renewals,
// connections gone, locks left in the table to expire.
func (s *Store) Abandon() {
	s.once.Do(func() {
		close(s.stop)
		<-s.stopped
		s.pool.Close()
	})
}
