// Package autoscale sizes tandem's two pools by themselves, within bounds the operator sets:
//
//   - HTTP is an adaptive concurrency limit in the manner of Netflix's concurrency-limits gradient:
//     it compares the recent service time of admitted requests with the lowest it has seen lately,
//     raises the thread count while they stay close (an I/O-bound app: more threads, more
//     throughput) and lowers it when latency climbs (a CPU-bound app: more threads only queue on
//     the cores).
//   - Jobs grows the worker pool while jobs wait and the process has CPU to spare, and shrinks it
//     after a quiet period, like Celery's --autoscale=max,min.
//
// A manual resize pins a pool (its controller stops) until Unpin. Each controller is a small service
// with Start and Stop; its Tick can be driven directly, which is how the tests run it.
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
	"sync/atomic"
	"time"
)

// Pool is what a controller resizes (a *pool.Pool, or the jobs runtime's Resize for the jobs pool).
type Pool interface {
	Size() int
	Running() int
	Waiting() int
}

// Bounds are a controller's range.
type Bounds struct{ Min, Max int }

func (b Bounds) validate() error {
	if b.Min < 1 || b.Max < b.Min {
		return fmt.Errorf("autoscale: need 1 <= min <= max, got min %d max %d", b.Min, b.Max)
	}
	return nil
}

func (b Bounds) clamp(n int) int { return min(max(n, b.Min), b.Max) }

// base is what both controllers share: bounds, pinning, the resize hook, the tick loop.
type base struct {
	name     string
	bounds   Bounds
	interval time.Duration
	pool     Pool
	resize   func(n int) (int, error)
	log      *slog.Logger
	onChange func(pool string, old, new int, reason string)
	pinned   atomic.Bool

	stop context.CancelFunc
	wg   sync.WaitGroup
}

// Pin stops the controller from changing the pool (a manual resize was made).
func (b *base) Pin() { b.pinned.Store(true) }

// Unpin hands the pool back to the controller.
func (b *base) Unpin() { b.pinned.Store(false) }

// Pinned reports whether the controller is paused by a manual resize.
func (b *base) Pinned() bool { return b.pinned.Load() }

// apply moves the pool to n (clamped) and reports the change.
func (b *base) apply(n int, reason string) {
	n = b.bounds.clamp(n)
	old := b.pool.Size()
	if n == old {
		return
	}
	if _, err := b.resize(n); err != nil {
		b.log.Error("autoscale resize", "pool", b.name, "size", n, "err", err)
		return
	}
	b.log.Info("autoscale", "pool", b.name, "old", old, "new", n, "reason", reason)
	if b.onChange != nil {
		b.onChange(b.name, old, n, reason)
	}
}

func (b *base) start(ctx context.Context, tick func(time.Time)) error {
	if b.stop != nil {
		return errors.New("autoscale: already started")
	}
	ctx, b.stop = context.WithCancel(context.WithoutCancel(ctx))
	b.apply(b.pool.Size(), "start within bounds")
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		t := time.NewTicker(b.interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				if !b.pinned.Load() {
					tick(now)
				}
			}
		}
	}()
	return nil
}

// Stop stops the controller and waits for it.
func (b *base) Stop() {
	if b.stop != nil {
		b.stop()
	}
	b.wg.Wait()
}

// HTTPOptions configure an HTTP controller.
type HTTPOptions struct {
	Name     string                                         // default "http"
	Bounds   Bounds                                         // required
	Pool     Pool                                           // required
	Resize   func(n int) (int, error)                       // required: the pool's Tune
	Interval time.Duration                                  // default 1s
	Logger   *slog.Logger                                   // default slog.Default()
	OnChange func(pool string, old, new int, reason string) // optional, for metrics
	// Tolerance is how much slower than the lowest recent latency the service may get before the
	// limit comes down. Default 1.2: with 1.5 a CPU-bound route settled at 8 threads on 2 cores
	// with twice the p99 of 2 threads (bench/autoscale.sh); latency that merely jitters stays
	// well inside 20%.
	Tolerance float64
	// Window is how many ticks the lowest latency is remembered. Default 60.
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
}

// HTTP is the adaptive thread count for the HTTP pool.
type HTTP struct {
	base
	opts HTTPOptions

	mu         sync.Mutex
	sum        time.Duration // service time observed this tick
	count      int
	saturated  bool      // running reached the size, or someone waited, during this tick
	history    []float64 // per-tick mean service time, seconds, most recent last
	ticks      int
	nextProbe  int     // tick of the next periodic probe
	probeGap   int     // ticks between periodic probes, doubled by probes that change nothing
	probing    bool    // the limit was halved to probe
	probeRTT   float64 // latency before the last halving
	probeFrom  float64 // the lowest level that beat its double during this probe
	probeStart float64 // limit when the probe began
	probeLevel float64 // the limit probeRTT was measured at
	grewFrom   float64 // the limit before last tick's growth; 0 when last tick did not grow
	growFails  int     // growths in a row that latency made the controller take back
	holdUntil  int     // tick before which no growth is tried after a failed one
	lastWait   float64 // CPUWait of the tick before
}

// probeCut reports whether fewer threads cut latency by at least half of what they would on a
// CPU-bound route, where service time is proportional to threads per core: halving 10 to 5 must
// cut it by a quarter, 3 to 2 (rounding) by a sixth.
func (h *HTTP) probeCut(rtt, limit float64) bool {
	ideal := limit / h.probeLevel
	return rtt < h.probeRTT*(1+ideal)/2
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
	if opts.CPUWait == nil {
		sw := newSchedWait()
		opts.CPUWait = func() float64 { return sw.quantile(0.9) }
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	h := &HTTP{nextProbe: opts.ProbeEvery, probeGap: opts.ProbeEvery, opts: opts, base: base{name: opts.Name, bounds: opts.Bounds, interval: opts.Interval, pool: opts.Pool,
		resize: opts.Resize, log: opts.Logger, onChange: opts.OnChange}}
	return h, nil
}

// Start runs the controller's loop.
func (h *HTTP) Start(ctx context.Context) error { return h.start(ctx, h.Tick) }

// Middleware measures each admitted request's service time for Observe; install it inside
// admission (server.Options.Admitted), so time in the backlog is not counted.
func (h *HTTP) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		next.ServeHTTP(w, r)
		h.Observe(time.Since(start))
	})
}

// Observe records one admitted request's service time (not its time in the backlog).
func (h *HTTP) Observe(d time.Duration) {
	saturated := h.pool.Waiting() > 0 || h.pool.Running() >= h.pool.Size()
	h.mu.Lock()
	h.sum += d
	h.count++
	h.saturated = h.saturated || saturated
	h.mu.Unlock()
}

// Tick runs one step of the gradient. With rtt the mean service time of this tick and minRTT the
// lowest per-tick mean in the window:
//
//	gradient = clamp(tolerance x minRTT / rtt, 0.5, 1)   (tolerance 1.2)
//	limit'   = limit + sqrt(limit)        while gradient is 1 and the pool was saturated
//	limit'   = limit x gradient           when latency climbed
//	limit'   = the limit before            when latency climbed right after a growth, and growth
//	                                       then waits 8, 32, 128... ticks (growHold)
//
// An idle pool is left alone (its latency says nothing about more threads). On the second tick and
// every ProbeEvery ticks the limit is halved for a tick: if latency falls by at least half of what
// halving would give a CPU-bound route (probeCut), the threads were sharing cores and it halves
// again; if not, the old limit comes back.
// Without probes a controller that started high would take its inflated latency for the baseline.
func (h *HTTP) Tick(time.Time) {
	cpuWait := h.opts.CPUWait()
	h.mu.Lock()
	sum, count, saturated := h.sum, h.count, h.saturated
	h.sum, h.count, h.saturated = 0, 0, false
	if count == 0 {
		h.mu.Unlock()
		return
	}
	h.ticks++
	rtt := sum.Seconds() / float64(count)
	h.history = append(h.history, rtt)
	if len(h.history) > h.opts.Window {
		h.history = h.history[1:]
	}
	minRTT := math.Inf(1)
	for _, v := range h.history {
		minRTT = min(minRTT, v)
	}
	gradient := max(0.5, min(1, h.opts.Tolerance*minRTT/rtt))
	limit := float64(h.pool.Size())
	next, reason, grew := limit, "", false
	switch {
	case h.probing && h.probeCut(rtt, limit) && limit > float64(h.bounds.Min):
		// This level beat its double: it is where to come back to if halving stops helping.
		h.probeRTT, h.probeFrom, h.probeLevel = rtt, limit, limit
		next, reason = limit/2, fmt.Sprintf("probe: half the threads cut latency to %.1fms, halving again", rtt*1000)
	case h.probing:
		h.probing = false
		if !h.probeCut(rtt, limit) {
			next, reason = h.probeFrom, fmt.Sprintf("probe: half the threads did not cut latency (%.1fms), restoring", rtt*1000)
		}
		if next == h.probeStart {
			h.probeGap = min(2*h.probeGap, 600) // nothing learned: probe less often
		}
		h.nextProbe = h.ticks + h.probeGap
	case (h.ticks == 2 || h.ticks >= h.nextProbe) && limit > float64(h.bounds.Min):
		h.probeStart = limit
		h.probing, h.probeRTT, h.probeFrom, h.probeLevel = true, rtt, limit, limit
		next, reason = limit/2, "probe: half the threads for a tick to re-learn the lowest latency"
	case gradient < 1 && h.grewFrom > 0:
		// The last growth made latency climb: take it back and wait longer before the next try.
		h.growFails++
		h.holdUntil = h.ticks + growHold(h.growFails)
		next, reason = h.grewFrom, fmt.Sprintf("latency rose to %.1fms (lowest %.1fms) after growing: back to %d, no growth for %d ticks",
			rtt*1000, minRTT*1000, int(h.grewFrom), growHold(h.growFails))
	case gradient < 1:
		next = limit * gradient
	case saturated && max(cpuWait, h.lastWait) >= h.opts.CPUWaitLimit.Seconds():
		// Cores full this tick or the one before (one quiet tick on a CPU-bound route is chance).
	case saturated && h.ticks >= h.holdUntil:
		if h.grewFrom > 0 {
			h.growFails = 0 // the last growth held its latency
		}
		next, grew = limit+math.Sqrt(limit), true
	}
	h.lastWait = cpuWait
	h.grewFrom = 0
	if grew {
		h.grewFrom = limit
	}
	h.mu.Unlock()
	if reason == "" {
		reason = fmt.Sprintf("latency %.1fms, lowest %.1fms, gradient %.2f, saturated %v, CPU wait p90 %.2fms", rtt*1000, minRTT*1000, gradient, saturated, cpuWait*1000)
	}
	h.log.Debug("autoscale tick", "pool", h.name, "size", int(limit), "latency_ms", rtt*1000, "lowest_ms", minRTT*1000,
		"saturated", saturated, "cpu_wait_p90_ms", cpuWait*1000, "next", int(math.Round(next)))
	h.apply(int(math.Round(next)), reason)
}

// JobsOptions configure a jobs controller.
type JobsOptions struct {
	Name   string // default "jobs"
	Bounds Bounds // required
	Pool   Pool   // required
	// Resize changes the pool's size (the jobs runtime's Resize, which also wakes the dispatcher).
	Resize func(n int) (int, error)
	// Backlog returns how many jobs are ready to run in unpaused queues. Required.
	Backlog func() int
	// CPU returns the process's CPU time so far; default: getrusage of this process.
	CPU func() time.Duration
	// Cores is the CPU budget (GOMAXPROCS). Required.
	Cores int
	// BusyShare is the share of Cores above which the pool stops growing. Default 0.85.
	BusyShare float64
	// Quiet is how long the pool must be idle before it shrinks. Default 30s.
	Quiet    time.Duration
	Interval time.Duration                                  // default 2s
	Logger   *slog.Logger                                   // default slog.Default()
	OnChange func(pool string, old, new int, reason string) // optional
}

// Jobs is the jobs pool's autoscaler.
type Jobs struct {
	base
	opts      JobsOptions
	lastTick  time.Time
	lastCPU   time.Duration
	busySince time.Time // when the pool last had work waiting or running near its size
}

// NewJobs returns a jobs controller; Start runs it.
func NewJobs(opts JobsOptions) (*Jobs, error) {
	if err := opts.Bounds.validate(); err != nil {
		return nil, err
	}
	if opts.Pool == nil || opts.Resize == nil || opts.Backlog == nil || opts.Cores < 1 {
		return nil, errors.New("autoscale: Pool, Resize, Backlog and Cores are required")
	}
	opts.Name = cmp.Or(opts.Name, "jobs")
	opts.BusyShare = cmp.Or(opts.BusyShare, 0.85)
	opts.Quiet = cmp.Or(opts.Quiet, 30*time.Second)
	opts.Interval = cmp.Or(opts.Interval, 2*time.Second)
	if opts.CPU == nil {
		opts.CPU = processCPU
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Jobs{opts: opts, base: base{name: opts.Name, bounds: opts.Bounds, interval: opts.Interval, pool: opts.Pool,
		resize: opts.Resize, log: opts.Logger, onChange: opts.OnChange}}, nil
}

// Start runs the controller's loop.
func (j *Jobs) Start(ctx context.Context) error {
	j.lastTick, j.lastCPU, j.busySince = time.Now(), j.opts.CPU(), time.Now()
	return j.start(ctx, j.Tick)
}

// Tick grows the pool by a quarter (at least one) while jobs wait, every worker is busy and CPU is
// below BusyShare of the cores; shrinks it by one after Quiet with nothing waiting and workers idle.
func (j *Jobs) Tick(now time.Time) {
	cpu := j.opts.CPU()
	if j.lastTick.IsZero() {
		j.lastTick, j.lastCPU, j.busySince = now, cpu, now
		return
	}
	wall := now.Sub(j.lastTick)
	used := 0.0
	if wall > 0 {
		used = (cpu - j.lastCPU).Seconds() / wall.Seconds() / float64(j.opts.Cores)
	}
	j.lastTick, j.lastCPU = now, cpu
	size, running := j.pool.Size(), j.pool.Running()
	waiting := j.opts.Backlog() + j.pool.Waiting()
	switch {
	case waiting > 0 && running >= size && used < j.opts.BusyShare:
		j.busySince = now
		j.apply(size+max(1, size/4), fmt.Sprintf("%d jobs waiting, all %d workers busy, CPU %.0f%% of %d cores", waiting, size, used*100, j.opts.Cores))
	case waiting > 0 || running*2 > size:
		j.busySince = now
	case now.Sub(j.busySince) >= j.opts.Quiet:
		j.busySince = now // shrink one step per quiet period
		j.apply(size-1, fmt.Sprintf("quiet for %s: no jobs waiting, %d of %d workers busy", j.opts.Quiet, running, size))
	}
}
