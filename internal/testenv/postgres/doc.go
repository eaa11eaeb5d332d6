// Package postgres runs a real, throw-away PostgreSQL (Debian's postgresql
// package) for tests, one cluster per test binary, and gives each test a
// database of its own in it.
//
//	func TestMain(m *testing.M) { os.Exit(postgres.Run(m)) }
//
//	func TestSomething(t *testing.T) {
//		dsn := postgres.DSN(t) // a fresh, empty database, dropped when the test ends
//		...
//	}
//
// The cluster starts on the first DSN call of the test binary: initdb costs
// a second or two, so it is shared, while a database per test (CREATE
// DATABASE, tens of milliseconds) keeps tests apart. Run stops the cluster
// and removes its directory after the package's tests; DSN refuses to start
// one in a binary whose TestMain does not call Run, which would leave the
// cluster running.
//
// The binaries are taken from /usr/lib/postgresql/VERSION/bin (the highest
// version installed), the layout of Debian's packages: nothing depends on
// symlinks in PATH. PostgreSQL refuses to run as root, so when the tests run
// as root (as in CI) initdb and postgres run as the system user postgres
// that the Debian package creates, in a temporary directory owned by it. The
// server listens on 127.0.0.1 on a free port below the ephemeral range (its
// Unix socket is in the temporary directory, out of the way of a system
// cluster), trusts every loopback connection, and trades durability for
// speed (fsync=off, small shared_buffers): its data is thrown away anyway.
//
// When the binaries are missing the test is skipped with a hint, or fails
// when the environment variable CI is set, so that CI never silently skips
// these tests. Install them with: apt-get install postgresql.
package postgres
