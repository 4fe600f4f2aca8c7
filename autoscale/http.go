package autoscale

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"time"
)

// HTTPOptions configure an HTTP controller.
type HTTPOptions struct {
	Name   string // default "http"
	Bounds Bounds // required
	Pool   Pool   // required
	// Resize changes the pool's size; reason says why (resize.Resizer.Controller gives one that
	// goes through tandem's one door). Required.
	Resize func(n int, reason string) (int, error)
	// Paused, when it returns true, makes the controller leave the pool alone (a manual resize
	// pinned it). Optional.
	Paused   func() bool
	Interval time.Duration                                  // default 1s
	Logger   *slog.Logger                                   // default slog.Default()
	OnChange func(pool string, old, new int, reason string) // optional, for metrics
	// Tolerance is how much slower than their lowest recent latency the routes may get before the
	// limit comes down. Default 1.2: with 1.5 a CPU-bound route settled at 8 threads on 2 cores
	// with twice the p99 of 2 threads (bench/autoscale.sh); latency that merely jitters stays
	// well inside 20%.
	Tolerance float64
	// Window is how many ticks a route's lowest latency is remembered. Default 60.
	Window int
	// CPUWait returns how long runnable goroutines waited for a CPU during the last tick (a
	// quantile, seconds). Default: the 90th percentile of the Go runtime's scheduling latencies.
	// Growth stops while it was at least CPUWaitLimit in this tick or the one before: the cores
	// are full, more threads would only share them. Measured on 2 cores with 64 connections: 1 to
	// 10ms on /demo/cpu at 2 threads, under 0.3ms on /demo/io at any count.
	CPUWait func() float64
	// CPUWaitLimit, default 1ms.
	CPUWaitLimit time.Duration
	// ProbeEvery is how many ticks pass before the first periodic probe (the limit halved for a
	// tick). Default 60. A probe that leaves the limit where it was doubles the wait for the next
	// one, up to 600 ticks: each probe costs the tail latency of a tick at half the threads.
	ProbeEvery int
	// Quiet is how long the pool must have had nothing waiting and at most half its threads busy
	// before it shrinks. Default 30s.
	Quiet time.Duration
}

// HTTP is the adaptive thread count for the HTTP pool.
type HTTP struct {
	base
	opts HTTPOptions

	mu         sync.Mutex
	routes     map[routeKey]*routeStat // service times by route
	saturated  bool                    // running reached the size, or someone waited, during this tick
	peak       int                     // most requests running at once seen this tick
	queued     int                     // most requests seen waiting this tick
	usage      usage
	ticks      int     // ticks that measured a latency
	nextProbe  int     // tick of the next periodic probe
	probeGap   int     // ticks between periodic probes, doubled by probes that change nothing
	probing    bool    // the limit was halved to probe
	probeFrom  float64 // the lowest level that beat its double during this probe
	probeStart float64 // limit when the probe began
	probeLevel float64 // the limit the probe's latencies (markProbe) were measured at
	grewFrom   float64 // the limit before last tick's growth; 0 when last tick did not grow
	growFails  int     // growths in a row that latency made the controller take back
	holdUntil  int     // tick before which no growth is tried after a failed one
	lastWait   float64 // CPUWait of the tick before
}

// probeCut reports whether fewer threads cut latency (changed: now over before the halving) by at
// least half of what they would on a CPU-bound route, where service time is proportional to
// threads per core: halving 10 to 5 must cut it by a quarter, 3 to 2 (rounding) by a sixth.
func (h *HTTP) probeCut(changed, limit float64) bool {
	ideal := limit / h.probeLevel
	return changed > 0 && changed < (1+ideal)/2
}

// growHold is how many ticks growth waits after the n-th failed growth in a row: 8, 32, 128, then
// the probe ceiling. On a CPU-bound route each failed growth is a tick of threads sharing cores,
// and one such tick in ten is enough to set the p99 of those ten seconds.
func growHold(n int) int { return min(8<<(2*(n-1)), 600) }

// NewHTTP returns an HTTP controller; Start runs it.
func NewHTTP(opts HTTPOptions) (*HTTP, error) {
	if err := opts.Bounds.validate(); err != nil {
		return nil, err
	}
	if opts.Pool == nil || opts.Resize == nil {
		return nil, errors.New("autoscale: Pool and Resize are required")
	}
	opts.Name = cmp.Or(opts.Name, "http")
	opts.Interval = cmp.Or(opts.Interval, time.Second)
	opts.Tolerance = cmp.Or(opts.Tolerance, 1.2)
	opts.Window = cmp.Or(opts.Window, 60)
	opts.ProbeEvery = cmp.Or(opts.ProbeEvery, 60)
	opts.CPUWaitLimit = cmp.Or(opts.CPUWaitLimit, time.Millisecond)
	opts.Quiet = cmp.Or(opts.Quiet, 30*time.Second)
	if opts.CPUWait == nil {
		opts.CPUWait = cpuWaitP90()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	h := &HTTP{nextProbe: opts.ProbeEvery, probeGap: opts.ProbeEvery, opts: opts, routes: map[routeKey]*routeStat{},
		usage: usage{quiet: opts.Quiet}, base: base{name: opts.Name, bounds: opts.Bounds, interval: opts.Interval,
			pool: opts.Pool, resize: opts.Resize, paused: opts.Paused, log: opts.Logger, onChange: opts.OnChange}}
	return h, nil
}

// Start runs the controller's loop.
func (h *HTTP) Start(ctx context.Context) error { return h.start(ctx, h.Tick) }

// Middleware measures each admitted request's service time for Observe, by route; install it
// inside admission (server.Options.Admitted), so time in the backlog is not counted. A request
// whose client went away is not measured: its handler stopped early, so its duration is no
// latency.
func (h *HTTP) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		next.ServeHTTP(w, r)
		d := time.Since(start)
		if errors.Is(r.Context().Err(), context.Canceled) {
			h.sample()
			return
		}
		h.observe(routeOf(r), d)
	})
}

// Observe records one admitted request's service time (not its time in the backlog) for route,
// a name such as "GET /v1/jobs": each route's latency is compared with its own lowest.
func (h *HTTP) Observe(route string, d time.Duration) { h.observe(routeKey{pattern: route}, d) }

func (h *HTTP) observe(k routeKey, d time.Duration) {
	running, waiting, size := h.pool.Running(), h.pool.Waiting(), h.pool.Size()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.note(running, waiting, size)
	r := h.routes[k]
	if r == nil {
		if len(h.routes) >= maxRoutes {
			k = routeKey{pattern: "(other)"}
		}
		if r = h.routes[k]; r == nil {
			r = &routeStat{}
			h.routes[k] = r
		}
	}
	r.sum += d
	r.count++
}

// sample notes the pool's load without a service time.
func (h *HTTP) sample() {
	running, waiting, size := h.pool.Running(), h.pool.Waiting(), h.pool.Size()
	h.mu.Lock()
	h.note(running, waiting, size)
	h.mu.Unlock()
}

// note records the pool's load at one moment of the tick; h.mu held.
func (h *HTTP) note(running, waiting, size int) {
	h.saturated = h.saturated || waiting > 0 || running >= size
	h.peak = max(h.peak, running)
	h.queued = max(h.queued, waiting)
}

// Tick runs one step of the gradient. With slower the request-weighted mean, over routes, of a
// route's mean service time this tick over its lowest per-tick mean in the window:
//
//	gradient = clamp(tolerance / slower, 0.5, 1)   (tolerance 1.2)
//	limit'   = limit + max(sqrt(limit), min(queued, limit))
//	                                       while gradient is 1 and the pool was saturated: up to
//	                                       double when that many requests queued
//	limit'   = limit x gradient           when latency climbed
//	limit'   = the limit before            when latency climbed right after a growth, and growth
//	                                       then waits 8, 32, 128... ticks (growHold)
//
// An idle pool's latency says nothing about more threads, so a tick without a request changes
// nothing but the quiet period: after Quiet with nothing waiting and at most half the threads
// busy, the pool shrinks to twice the most it used, at least min (usage). On the second tick and
// every ProbeEvery ticks the limit is halved for a tick: if latency falls by at least half of what
// halving would give a CPU-bound route (probeCut), the threads were sharing cores and it halves
// again; if not, the old limit comes back. Without probes a controller that started high would
// take its inflated latency for the baseline.
func (h *HTTP) Tick(now time.Time) {
	cpuWait := h.opts.CPUWait()
	running, waiting, size := h.pool.Running(), h.pool.Waiting(), h.pool.Size()
	h.mu.Lock()
	h.note(running, waiting, size)
	saturated, peak, queued := h.saturated, h.peak, h.queued
	h.saturated, h.peak, h.queued = false, 0, 0
	shrinkTo := h.usage.tick(now, saturated || peak*2 > size, peak)
	hasRequests := false
	for _, r := range h.routes {
		hasRequests = hasRequests || r.count > 0
	}
	var st tickStats
	if hasRequests {
		h.ticks++
		st = measure(h.routes, h.ticks, h.opts.Window)
	}
	shrink := shrinkTo > 0 && shrinkTo < size
	if shrink && h.probing {
		// The quiet pool comes down below where the probe would restore it: the probe is over.
		h.probing, h.nextProbe = false, h.ticks+h.probeGap
	}
	if !hasRequests || shrink {
		h.mu.Unlock()
		if shrink {
			h.apply(shrinkTo, fmt.Sprintf("quiet for %s: no request waiting, at most %d of %d threads busy", h.opts.Quiet, shrinkTo/2, size))
		}
		return
	}
	gradient := max(0.5, min(1, h.opts.Tolerance/st.slower))
	limit := float64(size)
	cut := h.probing && h.probeCut(st.changed, limit)
	next, reason, grew, mark := limit, "", false, false
	switch {
	case cut && limit > float64(h.bounds.Min):
		// This level beat its double: it is where to come back to if halving stops helping.
		h.probeFrom, h.probeLevel, mark = limit, limit, true
		next, reason = limit/2, fmt.Sprintf("probe: half the threads cut latency to %.2fx, halving again", st.changed)
	case h.probing:
		h.probing = false
		if !cut {
			next, reason = h.probeFrom, fmt.Sprintf("probe: half the threads did not cut latency (%.2fx), restoring", st.changed)
		}
		if next == h.probeStart {
			h.probeGap = min(2*h.probeGap, 600) // nothing learned: probe less often
		}
		h.nextProbe = h.ticks + h.probeGap
	case (h.ticks == 2 || h.ticks >= h.nextProbe) && limit > float64(h.bounds.Min):
		h.probeStart = limit
		h.probing, h.probeFrom, h.probeLevel, mark = true, limit, limit, true
		next, reason = limit/2, "probe: half the threads for a tick to re-learn the lowest latency"
	case gradient < 1 && h.grewFrom > 0:
		// The last growth made latency climb: take it back and wait longer before the next try.
		h.growFails++
		h.holdUntil = h.ticks + growHold(h.growFails)
		next, reason = h.grewFrom, fmt.Sprintf("latency rose to %.2fx its lowest after growing: back to %d, no growth for %d ticks",
			st.slower, int(h.grewFrom), growHold(h.growFails))
	case gradient < 1:
		next = limit * gradient
	case saturated && max(cpuWait, h.lastWait) >= h.opts.CPUWaitLimit.Seconds():
		// Cores full this tick or the one before (one quiet tick on a CPU-bound route is chance).
	case saturated && h.ticks >= h.holdUntil:
		if h.grewFrom > 0 {
			h.growFails = 0 // the last growth held its latency
		}
		next, grew = limit+max(math.Sqrt(limit), min(float64(queued), limit)), true
	}
	if mark {
		markProbe(h.routes)
	}
	h.lastWait = cpuWait
	h.grewFrom = 0
	if grew {
		h.grewFrom = limit
	}
	h.mu.Unlock()
	if reason == "" {
		reason = fmt.Sprintf("latency %.1fms, %.2fx the lowest, gradient %.2f, saturated %v, %d waiting, CPU wait p90 %.2fms",
			st.rtt*1000, st.slower, gradient, saturated, queued, cpuWait*1000)
	}
	h.log.Debug("autoscale tick", "pool", h.name, "size", size, "latency_ms", st.rtt*1000, "slower", st.slower,
		"saturated", saturated, "waiting", queued, "cpu_wait_p90_ms", cpuWait*1000, "next", int(math.Round(next)))
	h.apply(int(math.Round(next)), reason)
}
