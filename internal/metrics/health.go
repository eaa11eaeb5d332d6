package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/popbridge/popbridge/uidmap"
)

// Readiness decides /readyz: not while shutting down, the state store must
// answer a Load, and, when Upstream is set, the upstream must accept a TCP
// connection (checked at most every TTL, the answer cached meanwhile, so
// that probes do not hammer it).
type Readiness struct {
	Draining func() bool   // true once shutdown has begun; nil: never
	Store    uidmap.Store  // required
	Upstream func() string // the upstream address to dial; nil or "": not checked
	Timeout  time.Duration // for each check; default 2s
	TTL      time.Duration // of the cached upstream answer; default 5s

	mu       sync.Mutex
	upAt     time.Time // when the cached answer was taken
	upAddr   string
	upErr    error
	dialFunc func(ctx context.Context, network, addr string) (net.Conn, error) // tests
}

// readyKey is the maildrop /readyz loads: no user can have this name
// (upstream keys are host:port).
var readyKey = uidmap.Key{Upstream: "popbridge:readyz", User: "", Mailbox: "INBOX"}

// Check returns nil when popbridge is ready for sessions, or why not.
func (r *Readiness) Check(ctx context.Context) error {
	if r.Draining != nil && r.Draining() {
		return errors.New("shutting down")
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := r.Store.Load(sctx, readyKey); err != nil {
		return fmt.Errorf("state store: %w", err)
	}
	if r.Upstream != nil {
		if addr := r.Upstream(); addr != "" {
			if err := r.checkUpstream(ctx, addr, timeout); err != nil {
				return fmt.Errorf("upstream %s: %w", addr, err)
			}
		}
	}
	return nil
}

func (r *Readiness) checkUpstream(ctx context.Context, addr string, timeout time.Duration) error {
	ttl := r.TTL
	if ttl <= 0 {
		ttl = 5 * time.Second
	}
	r.mu.Lock()
	defer r.mu.Unlock() // one dial at a time; concurrent probes wait for its answer
	if addr == r.upAddr && !r.upAt.IsZero() && time.Since(r.upAt) < ttl {
		return r.upErr
	}
	dial := r.dialFunc
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := dial(dctx, "tcp", addr)
	if err == nil {
		c.Close()
	}
	r.upAt, r.upAddr, r.upErr = time.Now(), addr, err
	return err
}

// Handler serves /metrics from m's registry, /healthz (200 while the
// process runs) and /readyz (200 when ready.Check passes, 503 with the
// reason otherwise).
func Handler(m *Metrics, ready *Readiness) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{
		Registry:          m.Registry, // promhttp's own error counter
		EnableOpenMetrics: true,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := ready.Check(req.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// Server runs Handler on a listener until Shutdown.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Listen binds addr and serves h on it in the background.
func Listen(addr string, h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.address %s: %w", addr, err)
	}
	s := &Server{ln: ln, srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
	}}
	go s.srv.Serve(ln) //nolint:errcheck // ErrServerClosed after Shutdown
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shutdown stops the server, letting requests in flight finish until ctx
// ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
