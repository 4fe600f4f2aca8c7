// Package server is tandem's HTTP side: a chi router behind the threads pool (admission), the job
// API, health endpoints, and a separate admin listener for runtime information, live resizing,
// metrics and the dashboard.
//
// It knows jobs through package jobs alone, never the store behind it, and answers with types of
// its own (response.go), so neither the record nor its backend is the wire format.
//
// Go programs add their own routes to Router() before Start; they run behind the same admission,
// timeouts and logging as tandem's own:
//
//	srv, _ := server.New(server.Options{Threads: httpPool, Jobs: rt})
//	srv.Router().Get("/hello", hello)
//	srv.Start(ctx)
package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/pool"
	"github.com/tandem-run/tandem/resize"
)

// SizingInfo is what the process derived from its limits (package sizing), reported by GET
// /admin/runtime.
type SizingInfo struct {
	GOMAXPROCS       int
	GOMAXPROCSSource string
	CPUQuota         float64 // cores; 0 = no limit
	CPUsAllowed      int
	MemoryLimit      int64 // bytes; 0 = no limit
	GOMEMLIMIT       int64 // bytes set by tandem; 0 = none
	GOMEMLIMITSource string
	CPUs             float64       // min(CPUsAllowed, CPUQuota when set)
	WatchInterval    time.Duration // how often the limits are read again; 0 = not followed
	LimitsChanges    int           // changes of the limits followed since start
	LastLimitsChange *LimitsChange // nil before the first
	GOGC             int           // the GC percent in force
	GOGCSource       string        // "env", "heap_floor" or "default"
}

// Options configure a Server. Zero values mean the documented defaults.
type Options struct {
	// Addr is the main listener. Default ":8080".
	Addr string
	// AdminAddr is the admin listener. Default "127.0.0.1:9090".
	AdminAddr string
	// AdminToken, when set, is required as a bearer token on the admin listener. Without one the
	// admin listener must be on loopback (see ValidateAdminAddr).
	AdminToken string
	// MetricsAuth requires the token on /metrics too. Default false: Prometheus scrapes freely.
	MetricsAuth bool
	// Threads is the pool every request of the main router runs in (the threads knob). Nil turns
	// admission off: no slot, no backlog, no request timeout; for programs that put their own
	// limiter in front, and for benchmark H1's baseline.
	Threads *pool.Pool
	// Pools are the pools the admin API shows and resizes, by name. Default {"http": Threads}.
	Pools map[string]*pool.Pool
	// Resizer is the one door through which the admin API resizes Pools (it pins autoscaled pools
	// and writes the audit line). Default: one with each of Pools, resized by its Tune, and the
	// jobs pool by Jobs.Resize (which wakes the dispatcher).
	Resizer *resize.Resizer
	// Jobs serves the job API under /v1 and GET /admin/nodes; while its store does not answer
	// (Jobs.Healthy, a shared Postgres store), /readyz is 503. Optional: without it there is no
	// job API.
	Jobs *jobs.Runtime
	// QueueTimeout is the longest a request waits for a thread. Default 2s.
	QueueTimeout time.Duration
	// RequestTimeout cancels a handler's context and answers 503. Default 30s.
	RequestTimeout time.Duration
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout: http.Server's. Defaults 5s, 30s, 60s, 120s.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// MaxHeaderBytes is http.Server's (431 past it). Default 1 MiB.
	MaxHeaderBytes int
	// MaxBodyBytes caps request bodies (413 past it). Default 8 MiB.
	MaxBodyBytes int64
	// BodyTimeout is the longest the main router waits for a request's body once its headers are
	// in; past it the client gets 408 and the connection is closed. Bodies are read whole before
	// admission, so a slow client holds no thread. Default 10s, and never more than ReadTimeout.
	BodyTimeout time.Duration
	// ShutdownDelay is how long Shutdown keeps serving after /readyz turned 503, so that a load
	// balancer polling readiness stops sending before the listener closes. Default 0: none.
	ShutdownDelay time.Duration
	// AccessLog says which requests get an access log line (INFO). Default AccessErrors.
	AccessLog AccessLog
	// SlowRequest: under AccessErrors, requests that took longer than this are logged too.
	// Default 1s.
	SlowRequest time.Duration
	// DemoRoutes serves /demo/hello, /demo/io and /demo/cpu.
	DemoRoutes bool
	// Logger for access logs and errors. Default slog.Default().
	Logger *slog.Logger
	// Version is reported by /admin/runtime.
	Version string
	// Sizing reports what the process derived from its limits. Optional.
	Sizing func() SizingInfo
	// AutoSize puts a pool's size back on auto (PUT /admin/pools/{name} {"size": "auto"}): the
	// size derived from the CPU limit again, following it from then on, as a reload back to auto
	// does; attrs go on its audit line. It returns the size the pool had. Optional: without it
	// size auto is refused (400).
	AutoSize func(ctx context.Context, pool string, attrs ...slog.Attr) (int, error)
	// Middleware wraps every request of both routers, outermost first (metrics). Optional.
	Middleware []func(http.Handler) http.Handler
	// Admitted wraps each request of the main router after admission, on the worker that runs it
	// (the HTTP autoscaler measures service time there). Optional.
	Admitted []func(http.Handler) http.Handler
	// Metrics, when set, is served at GET /metrics on the admin listener.
	Metrics http.Handler
	// UI, when set, is served at /admin/ui/ on the admin listener (public: the page asks for the token).
	UI http.Handler
	// OnShed is called for each request shed by admission, with "backlog_full" or "queue_timeout".
	OnShed func(reason string)
	// MaxWaiters bounds the requests that wait on a job (GET /v1/jobs/{id}?wait=, and event
	// streams, follow.go), which hold no threads slot; past it they get 503 with Retry-After.
	// Default 10000.
	MaxWaiters int
}

func (o Options) withDefaults() Options {
	o.Addr = cmp.Or(o.Addr, ":8080")
	o.AdminAddr = cmp.Or(o.AdminAddr, "127.0.0.1:9090")
	o.QueueTimeout = cmp.Or(o.QueueTimeout, 2*time.Second)
	o.RequestTimeout = cmp.Or(o.RequestTimeout, 30*time.Second)
	o.ReadHeaderTimeout = cmp.Or(o.ReadHeaderTimeout, 5*time.Second)
	o.ReadTimeout = cmp.Or(o.ReadTimeout, 30*time.Second)
	o.WriteTimeout = cmp.Or(o.WriteTimeout, 60*time.Second)
	o.IdleTimeout = cmp.Or(o.IdleTimeout, 120*time.Second)
	o.MaxHeaderBytes = cmp.Or(o.MaxHeaderBytes, 1<<20)
	o.MaxBodyBytes = cmp.Or(o.MaxBodyBytes, 8<<20)
	o.BodyTimeout = min(cmp.Or(o.BodyTimeout, 10*time.Second), o.ReadTimeout)
	o.SlowRequest = cmp.Or(o.SlowRequest, time.Second)
	o.MaxWaiters = cmp.Or(o.MaxWaiters, 10_000)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if len(o.Pools) == 0 && o.Threads != nil {
		o.Pools = map[string]*pool.Pool{"http": o.Threads}
	}
	if o.Resizer == nil {
		o.Resizer = resize.New(resize.Options{Logger: o.Logger})
		for name, p := range o.Pools {
			apply := p.Tune
			if o.Jobs != nil && p == o.Jobs.Pool() {
				apply = o.Jobs.Resize
			}
			o.Resizer.Add(name, p.Size, apply)
		}
	}
	return o
}

// ValidateAdminAddr refuses an admin listener reachable from other hosts without a token.
func ValidateAdminAddr(addr, token string) error {
	if token != "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("admin address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("without admin.token (TANDEM_ADMIN_TOKEN) the admin listener must be on loopback (127.0.0.1 or ::1), not %q: anyone who reaches it could resize pools and cancel jobs", addr)
}

// Server is tandem's two HTTP listeners.
type Server struct {
	opts     Options
	log      *slog.Logger
	router   chi.Router // main routes behind admission; what Router returns
	mainRoot chi.Router // the main listener's whole router (health outside admission)
	admin    chi.Router

	ready    atomic.Bool
	draining atomic.Bool // Shutdown began: /readyz says so, responses close their connections
	// A listener's Serve failed: the shutdown delay, for load balancers to stop sending, would
	// only keep a half-dead process up, so Shutdown skips it.
	listenerDied atomic.Bool
	access       accessPolicy
	main         *http.Server
	adminSrv     *http.Server
	mainLn       net.Listener
	adminLn      net.Listener
	started      time.Time
	serveErrs    chan error
	wg           sync.WaitGroup
	waiters      atomic.Int64       // requests waiting on jobs (follow.go)
	closing      context.Context    // ends when Shutdown closes the main listener: waits end
	endWaits     context.CancelFunc // ends closing
}

// New builds both routers. Add routes to Router() before Start.
func New(opts Options) (*Server, error) {
	opts = opts.withDefaults()
	if err := ValidateAdminAddr(opts.AdminAddr, opts.AdminToken); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s := &Server{opts: opts, log: opts.Logger, serveErrs: make(chan error, 2)}
	s.closing, s.endWaits = context.WithCancel(context.Background())
	s.SetAccessLog(opts.AccessLog)
	s.SetSlowRequest(opts.SlowRequest)
	s.router = s.mainRouter()
	s.admin = s.adminRouter()
	return s, nil
}

// Router is the main router; everything mounted on it runs behind admission.
func (s *Server) Router() chi.Router { return s.router }

// Handler returns the main listener's whole handler, for tests and embedding.
func (s *Server) Handler() http.Handler { return s.outer(s.mainRoot, false) }

// AdminHandler returns the admin listener's whole handler.
func (s *Server) AdminHandler() http.Handler { return s.outer(s.admin, true) }

// outer adds what both listeners share outside the routers: request ids, access logs, the
// configured middleware.
func (s *Server) outer(router chi.Router, admin bool) http.Handler {
	var h http.Handler = router
	for i := len(s.opts.Middleware) - 1; i >= 0; i-- {
		h = s.opts.Middleware[i](h)
	}
	return s.requestID(router, s.accessLog(admin, h))
}

// Start listens on both addresses and serves in the background; it returns once both listen.
func (s *Server) Start(ctx context.Context) error {
	var lc net.ListenConfig
	mainLn, err := lc.Listen(ctx, "tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("server: listen %s: %w", s.opts.Addr, err)
	}
	adminLn, err := lc.Listen(ctx, "tcp", s.opts.AdminAddr)
	if err != nil {
		mainLn.Close()
		return fmt.Errorf("server: admin listen %s: %w", s.opts.AdminAddr, err)
	}
	s.mainLn, s.adminLn = mainLn, adminLn
	s.started = time.Now()
	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	s.main = &http.Server{
		Handler: s.Handler(), ReadHeaderTimeout: s.opts.ReadHeaderTimeout, ReadTimeout: s.opts.ReadTimeout,
		WriteTimeout: s.opts.WriteTimeout, IdleTimeout: s.opts.IdleTimeout, MaxHeaderBytes: s.opts.MaxHeaderBytes,
		ErrorLog: errLog,
	}
	s.adminSrv = &http.Server{
		Handler: s.AdminHandler(), ReadHeaderTimeout: s.opts.ReadHeaderTimeout, ReadTimeout: s.opts.ReadTimeout,
		WriteTimeout: s.opts.WriteTimeout, IdleTimeout: s.opts.IdleTimeout, MaxHeaderBytes: s.opts.MaxHeaderBytes,
		ErrorLog: errLog,
	}
	for _, p := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{s.main, mainLn}, {s.adminSrv, adminLn}} {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := p.srv.Serve(p.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("listener stopped", "addr", p.ln.Addr().String(), "err", err)
				s.listenerDied.Store(true)
				s.serveErrs <- err
			}
		}()
	}
	return nil
}

// Addr is the main listener's bound address (useful with port 0).
func (s *Server) Addr() string { return addrOf(s.mainLn, s.opts.Addr) }

// AdminAddr is the admin listener's bound address.
func (s *Server) AdminAddr() string { return addrOf(s.adminLn, s.opts.AdminAddr) }

func addrOf(ln net.Listener, def string) string {
	if ln == nil {
		return def
	}
	return ln.Addr().String()
}

// Errors reports a listener that stopped on its own.
func (s *Server) Errors() <-chan error { return s.serveErrs }

// SetReady sets what /readyz answers.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// Shutdown stops the server, in this order:
//  1. /readyz answers 503 ("shutting down") at once, and every response from now on closes its
//     connection, so clients that kept one open reconnect, to another instance.
//  2. For ShutdownDelay both listeners keep serving as before: a load balancer that polls
//     readiness sees 503 and takes the instance out while its requests still succeed.
//  3. The main listener closes (new connections are refused) and the requests in flight finish,
//     until ctx ends; then the rest are cut off. Requests that wait on a job (?wait, event
//     streams) end at once, with the job as it is.
//  4. The admin listener closes last, so an operator can watch the drain.
//
// ctx bounds the whole of it, the delay included. A second call does not wait the delay again.
func (s *Server) Shutdown(ctx context.Context) error {
	again := s.draining.Swap(true)
	s.SetReady(false)
	if s.main == nil {
		return nil
	}
	if d := s.opts.ShutdownDelay; d > 0 && !again && !s.listenerDied.Load() {
		s.log.Info("readiness off; serving on before closing the listener", "shutdown_delay", d.String())
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	s.endWaits()
	err := s.main.Shutdown(ctx)
	if err != nil {
		err = fmt.Errorf("server: drain: %w", err)
		_ = s.main.Close()
	}
	adminCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if aerr := s.adminSrv.Shutdown(adminCtx); aerr != nil {
		_ = s.adminSrv.Close()
	}
	s.wg.Wait()
	return err
}
