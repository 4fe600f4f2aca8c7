package autoscale

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"
)

// JobsOptions configure a jobs controller.
type JobsOptions struct {
	Name   string // default "jobs"
	Bounds Bounds // required
	Pool   Pool   // required
	// Resize changes the pool's size; reason says why (resize.Resizer.Controller gives one that
	// goes through tandem's one door, and so the jobs runtime's Resize, which wakes the
	// dispatcher). Required.
	Resize func(n int, reason string) (int, error)
	// Paused, when it returns true, makes the controller leave the pool alone (a manual resize
	// pinned it). Optional.
	Paused func() bool
	// Backlog returns how many jobs are ready to run in unpaused queues. Required.
	Backlog func() int
	// CPU returns the process's CPU time so far; default: getrusage of this process.
	CPU func() time.Duration
	// Cores is the CPU budget (GOMAXPROCS). Required unless CoresNow is set.
	Cores int
	// CoresNow, when set, is read each tick instead of Cores, so that the budget follows a live
	// change of the CPU limit (tandem passes the GOMAXPROCS it keeps current). Optional.
	CoresNow func() int
	// BusyShare is the share of Cores above which the pool stops growing. Default 0.85.
	BusyShare float64
	// CPUWait returns how long runnable goroutines waited for a CPU during the last tick (a
	// quantile, seconds); default: the 90th percentile of the Go runtime's scheduling latencies.
	// Growth stops while it was at least CPUWaitLimit (default 1ms) in this tick or the one
	// before, as in the HTTP controller: the cores are full. The CPU share alone misses it on a
	// machine shared with other processes, where the cores this process gets are fewer than
	// Cores: 386 CPU-bound jobs on 2 shared cores grew the pool to 16, at a third of the
	// throughput of 2 workers (bench/autoscale.sh, JOBS).
	CPUWait      func() float64
	CPUWaitLimit time.Duration
	// Quiet is how long the pool must have had nothing waiting and at most half its workers busy
	// before it shrinks. Default 30s.
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
	saturated bool    // the last tick found every worker busy and jobs waiting
	lastWait  float64 // CPUWait of the tick before
	usage     usage
}

// NewJobs returns a jobs controller; Start runs it.
func NewJobs(opts JobsOptions) (*Jobs, error) {
	if err := opts.Bounds.validate(); err != nil {
		return nil, err
	}
	if opts.Pool == nil || opts.Resize == nil || opts.Backlog == nil || (opts.Cores < 1 && opts.CoresNow == nil) {
		return nil, errors.New("autoscale: Pool, Resize, Backlog and Cores are required")
	}
	opts.Name = cmp.Or(opts.Name, "jobs")
	opts.BusyShare = cmp.Or(opts.BusyShare, 0.85)
	opts.Quiet = cmp.Or(opts.Quiet, 30*time.Second)
	opts.Interval = cmp.Or(opts.Interval, 2*time.Second)
	opts.CPUWaitLimit = cmp.Or(opts.CPUWaitLimit, time.Millisecond)
	if opts.CPUWait == nil {
		opts.CPUWait = cpuWaitP90()
	}
	if opts.CPU == nil {
		opts.CPU = processCPU
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Jobs{opts: opts, usage: usage{quiet: opts.Quiet}, base: base{name: opts.Name, bounds: opts.Bounds,
		interval: opts.Interval, pool: opts.Pool, resize: opts.Resize, paused: opts.Paused, log: opts.Logger, onChange: opts.OnChange}}, nil
}

// Start runs the controller's loop.
func (j *Jobs) Start(ctx context.Context) error {
	j.Tick(time.Now())
	return j.start(ctx, j.Tick)
}

// Tick sizes the pool from what happened since the last tick.
//
// While jobs wait, every worker is busy, no goroutine waited for a CPU (CPUWait) this tick or the
// one before and CPU is below BusyShare of the cores, it grows to
// running + waiting workers, at most max, in one step, like Celery's autoscaler; but at most to
// the workers the spare CPU can feed, judged from the CPU each worker used during the last tick
// (BusyShare x size / CPU share used, rounded up), so CPU-bound jobs stop near the cores. That
// figure needs a tick spent busy at the current size: on the first busy tick, which may have
// started idle, the pool grows by a quarter (at least one).
//
// After Quiet with nothing waiting and at most half the workers busy, it shrinks to twice the
// most workers busy in that time, at least min (usage).
func (j *Jobs) Tick(now time.Time) {
	cpu, cpuWait := j.opts.CPU(), j.opts.CPUWait()
	lastWait := j.lastWait
	j.lastWait = cpuWait
	if j.lastTick.IsZero() {
		j.lastTick, j.lastCPU = now, cpu
		j.usage.tick(now, true, j.pool.Running())
		return
	}
	cores := j.opts.Cores
	if j.opts.CoresNow != nil {
		cores = max(j.opts.CoresNow(), 1)
	}
	wall := now.Sub(j.lastTick)
	used := 0.0
	if wall > 0 {
		used = (cpu - j.lastCPU).Seconds() / wall.Seconds() / float64(cores)
	}
	j.lastTick, j.lastCPU = now, cpu
	size, running := j.pool.Size(), j.pool.Running()
	waiting := j.opts.Backlog() + j.pool.Waiting()
	saturated := waiting > 0 && running >= size
	wasSaturated := j.saturated
	j.saturated = saturated
	shrinkTo := j.usage.tick(now, waiting > 0 || running*2 > size, running)
	switch {
	case saturated && max(cpuWait, lastWait) >= j.opts.CPUWaitLimit.Seconds():
		// Goroutines waited for a CPU this tick or the one before: the cores are full.
		j.log.Debug("autoscale hold", "pool", j.name, "size", size, "waiting", waiting, "cpu_wait_p90_ms", cpuWait*1000)
	case saturated && used < j.opts.BusyShare:
		want, step := running+waiting, "one per job"
		fed := math.MaxInt // workers the spare CPU feeds, judged from the last tick's CPU per worker
		if used > 0 {
			fed = int(min(math.Ceil(float64(size)*j.opts.BusyShare/used), math.MaxInt32))
		}
		switch {
		case !wasSaturated:
			want, step = min(want, size+max(1, size/4)), "first busy tick: a quarter more"
		case fed < want:
			want, step = max(fed, size+1), fmt.Sprintf("as many as the spare CPU feeds (%d)", fed)
		}
		j.apply(want, fmt.Sprintf("%d jobs waiting, all %d workers busy, CPU %.0f%% of %d cores: %s",
			waiting, size, used*100, cores, step))
	case shrinkTo > 0 && shrinkTo < size:
		j.apply(shrinkTo, fmt.Sprintf("quiet for %s: no jobs waiting, at most %d of %d workers busy", j.opts.Quiet, shrinkTo/2, size))
	}
}
