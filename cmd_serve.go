package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/tandem-run/tandem/autoscale"
	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/kinds"
	"github.com/tandem-run/tandem/metrics"
	"github.com/tandem-run/tandem/pool"
	"github.com/tandem-run/tandem/resize"
	"github.com/tandem-run/tandem/server"
	"github.com/tandem-run/tandem/sizing"
	"github.com/tandem-run/tandem/store"
	"github.com/tandem-run/tandem/systemd"
	"github.com/tandem-run/tandem/web"
)

// runServe is the whole life of the process: config -> sizing -> store -> pools -> jobs ->
// server -> signals, then the same in reverse.
func runServe(ctx context.Context, args, env []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "[config flags]", stderr)
	l, err := loadFromArgs(fs, args, env)
	if err != nil {
		return err
	}
	cfg := l.Config
	if err := checkStartable(cfg); err != nil {
		return err
	}
	logs := newLogging(stderr, cfg.Log)
	log := logs.logger

	// Sizing: what the container allows, then GOMAXPROCS, GOMEMLIMIT and the two pools.
	res, err := sizing.Detect(sizing.DetectOptions{})
	if err != nil {
		log.Warn("cpu and memory limits not detected; using the machine's", "err", err)
	}
	sopts := sizing.Options{GOMAXPROCS: cfg.Sizing.GOMAXPROCS, GOMEMLIMITRatio: cfg.Sizing.GOMEMLIMITRatio,
		Getenv: func(name string) string { return getenv(env, name) }}
	rt := sizing.Apply(res, sopts)
	sz := deriveSizes(cfg, rt)
	// GOGC from the live heap (sizing.HeapFloor): its loop runs until serve returns.
	floor := int64(cfg.Sizing.HeapFloor)
	if floor == 0 {
		floor = -1 // off
	}
	gc := sizing.NewHeapFloor(sizing.HeapFloorOptions{Floor: floor, Getenv: func(name string) string { return getenv(env, name) }})
	gcCtx, stopGC := context.WithCancel(context.WithoutCancel(ctx))
	var gcLoop sync.WaitGroup
	gcLoop.Go(func() { gc.Run(gcCtx) })
	defer func() { stopGC(); gcLoop.Wait() }()

	mx := metrics.New(metrics.Options{})
	st, err := openStore(ctx, cfg.Store, log, mx)
	if err != nil {
		return err
	}
	defer st.close()
	// Until the server listens, a step that fails undoes the ones before it, newest first; the
	// store closes after them (its defer runs last).
	var undo teardown
	defer func() { undo.run(ctx, cfg.Jobs.ShutdownTimeout+5*time.Second, log) }()

	httpPool, err := pool.New(pool.Options{Name: "http", Size: sz.threads, Backlog: cfg.Server.Backlog, MaxParked: cfg.Server.Parked, Logger: log})
	if err != nil {
		return err
	}
	undo = append(undo, httpPool.Release)
	var pin []int
	if cfg.Jobs.PinCPUs {
		pin = res.AllowedCPUs
	}
	// The dispatcher bounds what it submits to size + prefetch, so the backlog only needs to hold
	// the prefetched jobs; MaxBacklog keeps a live resize from ever refusing one.
	jobPool, err := pool.New(pool.Options{Name: "jobs", Size: sz.concurrency, Backlog: pool.MaxBacklog, PinCPUs: pin, Logger: log})
	if err != nil {
		return err
	}
	undo = append(undo, jobPool.Release)

	runtime, err := jobs.New(jobs.Options{
		Store: st.store, Pool: jobPool, Queues: queueOptions(cfg.Jobs.Queues),
		MaxPending: cfg.Jobs.MaxPending, MaxAttempts: cfg.Jobs.MaxAttempts, Timeout: cfg.Jobs.Timeout,
		Retention: cfg.Jobs.Retention, MaxPayloadBytes: cfg.Jobs.MaxPayloadBytes,
		MaxResultBytes: cfg.Jobs.MaxResultBytes, BatchMax: cfg.Jobs.BatchMax, Prefetch: cfg.Jobs.Prefetch, PrefetchMax: cfg.Jobs.PrefetchMax,
		ShutdownTimeout: cfg.Jobs.ShutdownTimeout, Logger: log, Observer: mx.JobsObserver(),
		Node: cfg.Node.Name, Version: version, RescueAfter: cfg.Jobs.RescueAfter,
		NodePools: func() map[string]jobs.NodePool {
			h, j := httpPool.Stats(), jobPool.Stats()
			return map[string]jobs.NodePool{"http": {Size: h.Size, Running: h.Running}, "jobs": {Size: j.Size, Running: j.Running}}
		},
	})
	if err != nil {
		return err
	}
	if err := kinds.Register(runtime, kinds.Options{ExecAllow: cfg.Jobs.ExecAllow}); err != nil {
		return err
	}
	if err := registerPeriodic(runtime, cfg.Jobs.Periodic); err != nil {
		return err
	}
	if err := runtime.Start(ctx); err != nil {
		if errors.Is(err, store.ErrCorrupt) {
			return damaged(cfg.Store.Path, err)
		}
		return err
	}
	undo = append(undo, runtime.Stop)
	mx.RegisterPools(httpPool, jobPool)
	mx.RegisterQueues(runtime.Queues)

	// Every live resize (admin API, SIGHUP, autoscalers) goes through this one door.
	sizes := resize.New(resize.Options{Logger: log, OnChange: func(c resize.Change) {
		mx.Resized(c.Pool, string(c.By), c.Old, c.New)
	}})
	sizes.Add("http", httpPool.Size, httpPool.Tune)
	sizes.Add("jobs", jobPool.Size, runtime.Resize) // wakes the dispatcher to fill the room
	// A change of the container's limits re-derives what is still on auto (limits.go).
	lim, err := newLimits(cfg, res, rt, sopts, sizes, mx.LimitsChanged, log)
	if err != nil {
		return err
	}
	lim.gc = gc
	if len(pin) > 0 {
		lim.repin = jobPool.SetPinCPUs
	}
	scalers, admitted, err := startAutoscalers(ctx, cfg, lim.gomaxprocs, sizes, httpPool, runtime, mx, log)
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range scalers {
			s.Stop()
		}
	}()
	yield, err := startYield(ctx, cfg, rt, runtime, mx, log)
	if err != nil {
		return err
	}
	if yield != nil {
		defer yield.Stop()
		admitted = append(admitted, yield.Middleware)
	}
	srv, err := server.New(server.Options{
		Addr: cfg.Server.Addr, AdminAddr: cfg.Admin.Addr, AdminToken: cfg.Admin.Token,
		Threads: httpPool, Pools: map[string]*pool.Pool{"http": httpPool, "jobs": jobPool},
		Jobs:         runtime,
		QueueTimeout: cfg.Server.QueueTimeout, RequestTimeout: cfg.Server.RequestTimeout,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout, ReadTimeout: cfg.Server.ReadTimeout,
		WriteTimeout: cfg.Server.WriteTimeout, IdleTimeout: cfg.Server.IdleTimeout,
		MaxHeaderBytes: cfg.Server.MaxHeaderBytes, MaxBodyBytes: int64(cfg.Server.MaxBodyBytes),
		MaxWaiters:  cfg.Server.MaxWaiters,
		BodyTimeout: cfg.Server.BodyTimeout, ShutdownDelay: cfg.Server.ShutdownDelay,
		AccessLog: accessLog(cfg.Log.Access), SlowRequest: cfg.Log.SlowRequest,
		DemoRoutes: cfg.Server.DemoRoutes, Logger: log, Version: version,
		Sizing: lim.info, AutoSize: lim.backToAuto, MetricsAuth: cfg.Admin.MetricsAuth,
		Middleware: []func(http.Handler) http.Handler{mx.Middleware}, Metrics: mx.Handler(), OnShed: mx.Shed,
		Resizer: sizes, Admitted: admitted, UI: web.Handler(),
	})
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	undo = nil // up: from here the shutdown below stops everything, in its own order
	srv.SetReady(true)

	log.Info("tandem started",
		"gomaxprocs", rt.GOMAXPROCS, "gomaxprocs_source", rt.GOMAXPROCSSource, "gogc_source", gcSource(gc),
		"cpu_quota", nullable(res.CPUQuota), "cpus_allowed", res.CPUsAllowed,
		"memory_limit", nullable(res.MemoryLimit), "gomemlimit", nullable(rt.GOMEMLIMIT),
		"threads", sz.threads, "concurrency", sz.concurrency,
		"http_addr", srv.Addr(), "admin_addr", srv.AdminAddr(),
		"store_backend", cfg.Store.Backend, "store", st.where, "store_sync", storeSync(cfg.Store),
		"node", runtime.Node(), "version", version)
	if err := lim.start(ctx); err != nil {
		log.Warn("limits not watched", "err", err)
	}
	defer lim.stop()
	// A stuck bbolt file (a hung disk) stops the watchdog pings; a Postgres outage turns
	// readiness off instead (openedStore.health says why).
	notify := systemd.NewNotifier(systemd.NotifierOptions{Logger: log, Health: st.health})
	// READY=1 first: systemd expects watchdog pings only from a service that said it is up.
	_ = notify.Ready(fmt.Sprintf("serving on %s; threads=%d concurrency=%d", srv.Addr(), sz.threads, sz.concurrency))
	if err := notify.Start(ctx); err != nil {
		log.Warn("systemd watchdog", "err", err)
	}
	defer notify.Stop()

	listenerErr := waitForStop(ctx, log, srv.Errors(), func() { reload(l, fs, env, logs, live{httpPool, lim, srv}, log) })
	if listenerErr != nil {
		srv.SetReady(false) // readiness never says 200 with a listener gone
	}

	// Shutdown, in order (asynq's): stop following the limits; stop taking requests (readiness
	// 503 at once, requests still served for server.shutdown_delay, then the listener closed and
	// requests in flight finish up to server.shutdown_timeout), so no new job arrives; then stop
	// the jobs runtime (no new leases, running jobs finish up to jobs.shutdown_timeout, the rest go
	// back to ready); then the pools and the store. A second signal exits at once (waitForStop).
	_ = notify.Stopping("draining")
	lim.stop() // no resize from a limits change while the pools drain
	log.Info("shutting down", "server_delay", cfg.Server.ShutdownDelay.String(), "server_timeout", cfg.Server.ShutdownTimeout.String(), "jobs_timeout", cfg.Jobs.ShutdownTimeout.String())
	var errs []error
	srvCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Server.ShutdownDelay+cfg.Server.ShutdownTimeout)
	errs = append(errs, srv.Shutdown(srvCtx))
	cancel()
	jobsCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Jobs.ShutdownTimeout+5*time.Second)
	errs = append(errs, runtime.Stop(jobsCtx))
	errs = append(errs, jobPool.Release(jobsCtx), httpPool.Release(jobsCtx))
	cancel()
	errs = append(errs, st.close())
	if err := errors.Join(errs...); err != nil {
		log.Error("shutdown", "err", err)
		return errors.Join(listenerErr, err)
	}
	if listenerErr != nil {
		return listenerErr // exit non-zero: a supervisor restarts what can no longer serve
	}
	log.Info("tandem stopped")
	return nil
}

// waitForStop blocks until SIGTERM or SIGINT (or ctx ends), calling onHUP for each SIGHUP. After
// the first stop signal, a second one exits the process at once. A listener that stops on its own
// (failed reports it) ends the wait too, with its error; a stop signal during that drain exits at
// once.
func waitForStop(ctx context.Context, log *slog.Logger, failed <-chan error, onHUP func()) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	exitOnNextSignal := func() {
		go func() {
			for s := range sigs {
				if s != syscall.SIGHUP {
					log.Warn("second signal; exiting at once", "signal", s.String())
					os.Exit(exitFail)
				}
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			signal.Stop(sigs)
			return nil
		case err := <-failed:
			// The server logged which listener; draining the rest beats serving half of tandem.
			exitOnNextSignal()
			return fmt.Errorf("a listener stopped: %w", err)
		case s := <-sigs:
			if s == syscall.SIGHUP {
				onHUP()
				continue
			}
			log.Info("signal received; draining (send it again to exit at once)", "signal", s.String())
			exitOnNextSignal()
			return nil
		}
	}
}

// teardown is what serve's setup started so far, each with its stop; run stops them newest first.
type teardown []func(context.Context) error

// run stops every step, each within timeout of the whole; a stop that fails is logged, since the
// setup error that caused the teardown is the one returned.
func (t teardown) run(ctx context.Context, timeout time.Duration, log *slog.Logger) {
	if len(t) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	for i := len(t) - 1; i >= 0; i-- {
		if err := t[i](ctx); err != nil {
			log.Warn("stopping after a failed start", "err", err)
		}
	}
}

// accessLog maps log.access (validated by the schema) to the server's policy.
func accessLog(s string) server.AccessLog {
	a, _ := server.ParseAccessLog(s)
	return a
}

// storeSync is store.sync for the start line: a bbolt setting, which Postgres (its own
// synchronous_commit) does not have.
func storeSync(c StoreConfig) string {
	if c.Backend != "bbolt" {
		return "n/a"
	}
	return c.Sync
}

// damaged adds to an error wrapping store.ErrCorrupt, found before tandem wrote anything, what the
// operator can do about the file. It stays one line: the exit message of a service. (`bbolt check`
// is not suggested: it panics itself on a truncated file.)
func damaged(path string, err error) error {
	return fmt.Errorf("%w; tandem left the file as it was: restore %s from a backup, or move it aside "+
		"to start with an empty queue (its jobs are then lost)", err, path)
}

// sizes are the two pool sizes after "auto" was resolved.
type sizes struct{ threads, concurrency int }

func deriveSizes(cfg Config, rt sizing.Settings) sizes {
	s := sizes{threads: cfg.Server.Threads, concurrency: cfg.Jobs.Concurrency}
	if s.threads == 0 {
		s.threads = sizing.DefaultThreads(rt.GOMAXPROCS)
	}
	if s.concurrency == 0 {
		s.concurrency = sizing.DefaultConcurrency(rt.GOMAXPROCS)
	}
	return s
}

// checkStartable checks what a start needs beyond each key's own range.
func checkStartable(cfg Config) error {
	if err := server.ValidateAdminAddr(cfg.Admin.Addr, cfg.Admin.Token); err != nil {
		return &ConfigError{Key: "admin.addr", Value: cfg.Admin.Addr, Allowed: err.Error()}
	}
	return nil
}

func queueOptions(qs map[string]QueueConfig) map[string]jobs.QueueOptions {
	out := make(map[string]jobs.QueueOptions, len(qs))
	for name, q := range qs {
		out[name] = jobs.QueueOptions{Weight: q.Weight, Concurrency: q.Concurrency, MaxPending: q.MaxPending}
	}
	return out
}

// nullable reports zero ("no limit") as JSON null.
func nullable[T int64 | float64](v T) any {
	if v == 0 {
		return nil
	}
	return v
}

// scaler is a running autoscaler.
type scaler interface{ Stop() }

// startAutoscalers starts the controllers the configuration turns on, keyed by pool name, and
// returns the middleware the HTTP one needs inside admission; cores is the current GOMAXPROCS (the
// jobs controller's CPU budget, which follows a limits change). On error none is left running.
func startAutoscalers(ctx context.Context, cfg Config, cores func() int, sizes *resize.Resizer, httpPool *pool.Pool, jobsRT *jobs.Runtime, mx *metrics.Metrics, log *slog.Logger) (_ map[string]scaler, _ []func(http.Handler) http.Handler, err error) {
	out := map[string]scaler{}
	defer func() {
		if err != nil {
			for _, s := range out {
				s.Stop()
			}
		}
	}()
	var admitted []func(http.Handler) http.Handler
	if b := cfg.Server.Autoscale; b.Enabled() {
		apply, paused := sizes.Controller("http")
		h, err := autoscale.NewHTTP(autoscale.HTTPOptions{Resize: apply, Paused: paused, Bounds: autoscale.Bounds{Min: b.Min, Max: b.Max}, Pool: httpPool,
			Quiet: b.Quiet, Logger: log})
		if err != nil {
			return nil, nil, err
		}
		if err := h.Start(ctx); err != nil {
			return nil, nil, err
		}
		out["http"], admitted = h, append(admitted, h.Middleware)
	}
	if b := cfg.Jobs.Autoscale; b.Enabled() {
		apply, paused := sizes.Controller("jobs")
		j, err := autoscale.NewJobs(autoscale.JobsOptions{Resize: apply, Paused: paused, Bounds: autoscale.Bounds{Min: b.Min, Max: b.Max}, Pool: jobsRT.Pool(),
			Backlog: jobsRT.ReadyBacklog, CoresNow: cores, Quiet: b.Quiet, Logger: log})
		if err != nil {
			return nil, nil, err
		}
		if err := j.Start(ctx); err != nil {
			return nil, nil, err
		}
		out["jobs"] = j
	}
	for name := range out {
		mx.RegisterPinned(name, func() bool { return sizes.Pinned(name) })
	}
	return out, admitted, nil
}

// gcSource is the start line's gogc_source: where GOGC comes from (its value moves with the heap).
func gcSource(gc *sizing.HeapFloor) string {
	_, src := gc.GOGC()
	return src
}
