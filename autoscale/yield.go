package autoscale

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// YieldOptions configure a Yield controller. Zero values mean the documented defaults.
type YieldOptions struct {
	// Pool is the jobs pool: its size is where the limit starts and ends, its running jobs say
	// whether a lower limit would change anything yet. Required.
	Pool Pool
	// SetLimit applies a limit: at most n jobs at once, 0 for none (jobs.Runtime.SetYield). It must
	// not block. Required.
	SetLimit func(n int, reason string)
	// Cores is the CPU budget (GOMAXPROCS). Required.
	Cores int
	// MinWorkers is the floor: however long HTTP is busy, this many workers keep taking jobs, so
	// jobs are slowed, never starved. Default 1; at most the pool's size at the time.
	MinWorkers int
	// CPUWait returns how long runnable goroutines waited for a CPU since the last call (a quantile,
	// seconds). Default: the 90th percentile of the Go runtime's scheduling latencies, as the other
	// controllers read it.
	CPUWait func() float64
	// CPUWaitLimit is the wait at and above which requests are taken to be waiting for a core.
	// Default 1ms: the HTTP controller's limit (on 2 cores 1 to 10 ms with the cores full, under
	// 0.3 ms with a core spare).
	CPUWaitLimit time.Duration
	// CPU returns the process's CPU time so far; default: getrusage of this process.
	CPU func() time.Duration
	// BusyShare is the share of Cores the process may use with one more job for a step back up
	// to be tried; it must also leave a whole core for HTTP (Cores - 1, on one core BusyShare of
	// it). A job's CPU is estimated as the process's CPU over its running jobs, which overstates
	// it. Default 0.85, as the jobs controller's. So CPU-bound jobs stay held back while HTTP has
	// traffic, even where other processes leave them less than a core each: on 2 cores one more
	// would take the core HTTP has.
	BusyShare float64
	// Idle and MinRate say when HTTP has traffic: at least MinRate requests a second arrived
	// (Arrived) over the last Idle. Without traffic the limit is lifted at once: the cores go back
	// to the jobs. Defaults 2s and 5 requests a second, so a health probe or a metrics scrape
	// every few seconds is not traffic.
	Idle    time.Duration
	MinRate float64
	// Calm is how many ticks in a row the wait must stay under CPUWaitLimit, with the limit in
	// place, before one worker is given back. Default 8 (2 s at the default Interval). A step back
	// up after which the wait rises again at once is taken back, and the next needs twice as many
	// calm ticks, up to 64x Calm: each failed step costs requests a tick of waiting.
	Calm int
	// Interval is the tick. Default 250ms, a quarter of the HTTP controller's: each tick with the
	// cores full is a tick of slow requests, and a lower limit bites only as running jobs end.
	Interval time.Duration
	// Logger. Default slog.Default(). Limit changes are logged at info, nothing per tick.
	Logger *slog.Logger
}

// Yield gives HTTP the right of way over the jobs pool: while requests arrive and goroutines wait
// for a core (scheduling latency) with jobs running, it lowers the number of jobs the jobs pool
// lets run at once (SetLimit), one worker a tick down to MinWorkers; it gives them back one at a
// time once the wait has stayed low for Calm ticks and the CPU has room for another job, and all
// at once when HTTP has no traffic. It never resizes the pool and never interrupts a running job:
// the limit applies as workers take their next job. Like the other controllers it is a small
// service with Start and Stop; Tick can be driven directly with its clock, as the tests do.
type Yield struct {
	opts    YieldOptions
	arrived atomic.Uint64 // requests seen (Arrived)

	mu       sync.Mutex
	limit    int // 0: no limit
	reason   string
	traffic  []trafficSample // arrivals at each tick of the last Idle, oldest first
	lastTick time.Time
	lastCPU  time.Duration
	calm     int           // ticks in a row under CPUWaitLimit while yielding
	calmAt   time.Time     // the start of those ticks
	calmCPU  time.Duration // the process's CPU time then
	stepped  bool          // the last tick gave a worker back: this tick judges that step
	fails    int           // steps back up taken back in a row
	yields   uint64

	stop context.CancelFunc
	wg   sync.WaitGroup
}

type trafficSample struct {
	at      time.Time
	arrived uint64
}

// maxCalmShift bounds the doubling of Calm after failed steps back up (64x).
const maxCalmShift = 6

// NewYield returns a Yield controller; Start runs it.
func NewYield(opts YieldOptions) (*Yield, error) {
	if opts.Pool == nil || opts.SetLimit == nil || opts.Cores < 1 {
		return nil, errors.New("autoscale: yield: Pool, SetLimit and Cores are required")
	}
	if opts.MinWorkers < 0 || opts.Calm < 0 || opts.MinRate < 0 || opts.BusyShare < 0 {
		return nil, errors.New("autoscale: yield: MinWorkers, Calm, MinRate and BusyShare must not be negative")
	}
	opts.MinWorkers = cmp.Or(opts.MinWorkers, 1)
	opts.CPUWaitLimit = cmp.Or(opts.CPUWaitLimit, time.Millisecond)
	opts.BusyShare = cmp.Or(opts.BusyShare, 0.85)
	opts.Idle = cmp.Or(opts.Idle, 2*time.Second)
	opts.MinRate = cmp.Or(opts.MinRate, 5)
	opts.Calm = cmp.Or(opts.Calm, 8)
	opts.Interval = cmp.Or(opts.Interval, 250*time.Millisecond)
	if opts.CPUWait == nil {
		opts.CPUWait = cpuWaitP90()
	}
	if opts.CPU == nil {
		opts.CPU = processCPU
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Yield{opts: opts}, nil
}

// Arrived counts one HTTP request: the controller judges the wait for a core only while requests
// arrive. Middleware calls it; it is one atomic add.
func (y *Yield) Arrived() { y.arrived.Add(1) }

// Middleware counts each request (Arrived) and passes it on.
func (y *Yield) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		y.Arrived()
		next.ServeHTTP(w, r)
	})
}

// Start runs the controller's loop until Stop.
func (y *Yield) Start(ctx context.Context) error {
	if y.stop != nil {
		return errors.New("autoscale: yield: already started")
	}
	ctx, y.stop = context.WithCancel(context.WithoutCancel(ctx))
	y.mu.Lock()
	if y.limit == 0 {
		y.reason = "no request waits for a core: every worker takes jobs"
		y.opts.SetLimit(0, y.reason) // so the admin API shows the controller on
	}
	y.mu.Unlock()
	y.Tick(time.Now())
	y.wg.Add(1)
	go func() {
		defer y.wg.Done()
		t := time.NewTicker(y.opts.Interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				y.Tick(now)
			}
		}
	}()
	return nil
}

// Stop stops the controller, waits for it, and lifts the limit: a stopped controller holds no
// job back.
func (y *Yield) Stop() {
	if y.stop != nil {
		y.stop()
	}
	y.wg.Wait()
	y.mu.Lock()
	defer y.mu.Unlock()
	y.set(0, "yield controller stopped")
}

// YieldState is a controller's state, for the admin API and tests.
type YieldState struct {
	Limit  int    // 0: no limit
	Reason string // why the limit is what it is
	Yields uint64 // times the limit came down
}

// State returns the controller's state.
func (y *Yield) State() YieldState {
	y.mu.Lock()
	defer y.mu.Unlock()
	return YieldState{Limit: y.limit, Reason: y.reason, Yields: y.yields}
}

// Tick runs one step. With wait the CPU wait of the tick, eff the limit in force (the pool's size
// when none), running the jobs running:
//
//	no traffic over Idle                lift the limit
//	wait >= CPUWaitLimit, jobs running  limit' = max(MinWorkers, min(eff, running) - 1), once the
//	                                    jobs running are down to eff (a running job finishes
//	                                    after the limit came down; stepping again before it
//	                                    ends would overshoot); a step up the tick before is
//	                                    taken back this way and doubles the calm needed next
//	wait low for Calm << fails ticks    limit' = eff + 1 (none once it reaches the size) when the
//	                                    process's CPU over those ticks with one more job,
//	                                    estimated as used x (running + 1) / running, stays within
//	                                    BusyShare of the cores and leaves one core (room)
//
// So CPU-bound jobs stay held back while HTTP has traffic (one more would fill the cores again),
// and I/O-bound ones, which leave the CPU idle, come back after Calm ticks each.
func (y *Yield) Tick(now time.Time) {
	wait, cpu, arrived := y.opts.CPUWait(), y.opts.CPU(), y.arrived.Load()
	size, running := y.opts.Pool.Size(), y.opts.Pool.Running()
	y.mu.Lock()
	defer y.mu.Unlock()
	y.traffic = append(y.traffic, trafficSample{now, arrived})
	drop := 0 // keep the newest sample at least Idle old: the window's start
	for drop+1 < len(y.traffic) && !y.traffic[drop+1].at.After(now.Add(-y.opts.Idle)) {
		drop++
	}
	y.traffic = y.traffic[drop:]
	if y.lastTick.IsZero() {
		y.lastTick, y.lastCPU = now, cpu
		return
	}
	lastTick, lastCPU := y.lastTick, y.lastCPU
	y.lastTick, y.lastCPU = now, cpu
	recent := arrived - y.traffic[0].arrived
	traffic := float64(recent) >= max(1, y.opts.MinRate*y.opts.Idle.Seconds())
	eff := size
	if y.limit > 0 {
		eff = min(y.limit, size)
	}
	floor := min(y.opts.MinWorkers, size)
	stepped := y.stepped
	y.stepped = false
	high := wait >= y.opts.CPUWaitLimit.Seconds()
	switch {
	case !traffic:
		y.calm, y.fails = 0, 0
		y.set(0, fmt.Sprintf("HTTP idle: %d requests in the last %s (traffic: %g a second)", recent, y.opts.Idle, y.opts.MinRate))
	case high:
		y.calm = 0
		if stepped {
			y.fails = min(y.fails+1, maxCalmShift)
		}
		from := min(eff, running)
		if running == 0 || running > eff || from <= floor {
			return // no job to hold back, the last limit not reached yet, or at the floor
		}
		why := ""
		if stepped {
			why = fmt.Sprintf(" right after a worker was given back (next try after %d calm ticks)", y.opts.Calm<<y.fails)
		}
		y.set(from-1, fmt.Sprintf("requests wait for a core: CPU wait p90 %.2fms >= %s with %d jobs running%s: %d of %d workers take jobs",
			wait*1000, y.opts.CPUWaitLimit, running, why, from-1, size))
	case y.limit > 0:
		if stepped {
			y.fails = 0 // the step held
		}
		if y.calm == 0 {
			y.calmAt, y.calmCPU = lastTick, lastCPU
		}
		y.calm++
		if y.calm < y.opts.Calm<<y.fails {
			return
		}
		used := 0.0 // cores, over the calm ticks: one tick's figure jitters
		if wall := now.Sub(y.calmAt); wall > 0 {
			used = (cpu - y.calmCPU).Seconds() / wall.Seconds()
		}
		perJob := used / float64(max(running, 1))
		if used+perJob > y.room() {
			y.opts.Logger.Debug("yield hold", "limit", y.limit, "cpu_cores", used, "running", running)
			return // CPU-bound jobs: one more would fill the cores again
		}
		y.calm, y.stepped = 0, true
		next := eff + 1
		reason := fmt.Sprintf("CPU wait p90 %.2fms under %s for %d ticks and CPU %.2f of %d cores leaves a core with one more job: %d of %d workers take jobs",
			wait*1000, y.opts.CPUWaitLimit, y.opts.Calm<<y.fails, used, y.opts.Cores, next, size)
		if next >= size {
			next, reason = 0, fmt.Sprintf("CPU wait p90 %.2fms under %s for %d ticks and CPU %.2f of %d cores: every worker takes jobs again",
				wait*1000, y.opts.CPUWaitLimit, y.opts.Calm<<y.fails, used, y.opts.Cores)
		}
		y.set(next, reason)
	}
}

// room is the most CPU, in cores, the process may use with one more job for it to be given back:
// BusyShare of the cores, leaving one for HTTP.
func (y *Yield) room() float64 {
	cores := float64(y.opts.Cores)
	return min(y.opts.BusyShare*cores, max(cores-1, y.opts.BusyShare))
}

// set applies limit n and logs a change; y.mu held.
func (y *Yield) set(n int, reason string) {
	old := y.limit
	if n == old {
		return
	}
	if n > 0 && (old == 0 || n < old) {
		y.yields++
	}
	y.limit, y.reason = n, reason
	y.opts.SetLimit(n, reason)
	if n == 0 {
		y.opts.Logger.Info("jobs stop yielding to HTTP", "old_limit", old, "reason", reason)
	} else {
		y.opts.Logger.Info("jobs yield to HTTP", "old_limit", old, "limit", n, "reason", reason)
	}
}
