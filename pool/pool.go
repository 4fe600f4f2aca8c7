// Package pool provides tandem's two bounded worker pools.
//
// A Pool is an ants goroutine pool behind an admission gate. The gate holds the pool's size (how
// many tasks run at once) and a bounded FIFO backlog of callers waiting for a slot, each for at most
// its context's deadline; ants runs the admitted tasks on recycled goroutines. The gate exists
// because ants cannot time a waiting Submit out or change its blocking limit live, and both are the
// point of the threads knob: nothing waits forever and memory stays bounded.
//
// How big the pools start is package sizing's business: it reads the cgroup and affinity limits and
// derives GOMAXPROCS and the default sizes.
package pool

import (
	"cmp"
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/ants/v2"
)

// MaxSize is the largest size a pool accepts, and MaxBacklog the largest backlog.
const (
	MaxSize    = 4096
	MaxBacklog = 100_000
)

// Errors returned by Acquire, Submit and Do. Callers shed load on ErrBacklogFull and
// ErrQueueTimeout (an HTTP server answers 503 with Retry-After).
var (
	// ErrBacklogFull means every slot was busy and the backlog was full: the task was refused at once.
	ErrBacklogFull = errors.New("pool: backlog full")
	// ErrQueueTimeout means the task waited in the backlog until its context ended.
	ErrQueueTimeout = errors.New("pool: timed out waiting for a slot")
	// ErrClosed means the pool was released.
	ErrClosed = errors.New("pool: closed")
	// ErrInvalidSize means a size or backlog outside the allowed range was asked for.
	ErrInvalidSize = errors.New("pool: invalid size")
)

// Options configure a Pool. Zero values mean the documented default.
type Options struct {
	// Name labels the pool in logs and stats ("http", "jobs"). Default "pool".
	Name string
	// Size is how many tasks run at once, 1..MaxSize. Default 1.
	Size int
	// Backlog is how many callers may wait for a slot, 0..MaxBacklog. The zero value means no
	// backlog (refuse at once when full); this is the one field where zero is not "a default",
	// because an empty backlog is a meaningful setting.
	Backlog int
	// MaxParked is how many slot holders may lend their slot back at once while they wait on
	// something that needs no CPU of this process (Wait), 0..MaxBacklog. Like Backlog, zero means
	// none: Wait then waits with the slot held.
	MaxParked int
	// PinCPUs, when non-empty, pins each worker's OS thread to one of these CPUs, round-robin
	// (see PinThread). Empty: workers float like any goroutine.
	PinCPUs []int
	// Logger receives panics recovered from tasks. Default slog.Default().
	Logger *slog.Logger
	// OnPanic, when set, is called after a task's panic was recovered and logged (for metrics).
	OnPanic func(v any)
}

func (o Options) withDefaults() Options {
	o.Name = cmp.Or(o.Name, "pool")
	o.Size = cmp.Or(o.Size, 1)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

func (o Options) validate() error {
	if err := ValidateSize(o.Size); err != nil {
		return fmt.Errorf("pool %s: size: %w", o.Name, err)
	}
	if err := ValidateBacklog(o.Backlog); err != nil {
		return fmt.Errorf("pool %s: backlog: %w", o.Name, err)
	}
	if err := ValidateBacklog(o.MaxParked); err != nil {
		return fmt.Errorf("pool %s: max parked: %w", o.Name, err)
	}
	return nil
}

// ValidateSize reports whether n is an allowed pool size.
func ValidateSize(n int) error {
	if n < 1 || n > MaxSize {
		return fmt.Errorf("%w: must be between 1 and %d, got %d", ErrInvalidSize, MaxSize, n)
	}
	return nil
}

// ValidateBacklog reports whether n is an allowed backlog.
func ValidateBacklog(n int) error {
	if n < 0 || n > MaxBacklog {
		return fmt.Errorf("%w: must be between 0 and %d, got %d", ErrInvalidSize, MaxBacklog, n)
	}
	return nil
}

// Stats is a snapshot of a pool.
type Stats struct {
	Name     string `json:"name"`
	Size     int    `json:"size"`     // tasks allowed to run at once
	Running  int    `json:"running"`  // tasks holding a slot
	Waiting  int    `json:"waiting"`  // callers in the backlog
	Backlog  int    `json:"backlog"`  // most callers allowed to wait
	Parked   int    `json:"parked"`   // slot holders that lent their slot back while they wait (Wait)
	Rejected uint64 `json:"rejected"` // refused: backlog full or timed out waiting
	Panics   uint64 `json:"panics"`   // tasks that panicked (recovered)
}

// Pool is a resizable bounded pool. All methods are safe for concurrent use.
type Pool struct {
	opts Options
	ants *ants.Pool

	mu      sync.Mutex
	size    int
	limit   int // SetLimit: slots handed out while below size; 0 for none
	backlog int
	running int
	waiters list.List // of *waiter, FIFO (but for parked callers taking their slot back, first)
	closed  bool
	// Callers whose slot is lent back during a Wait (park.go), at most maxParked.
	parked, maxParked int

	rejected atomic.Uint64
	panics   atomic.Uint64
	tasks    sync.WaitGroup // admitted tasks not yet finished, for Release
	pinner   *pinner
	release  func() // p.releaseSlot, bound once so Acquire does not allocate
}

// New returns a pool ready to run tasks. It starts no goroutine until a task is submitted; call
// Release to stop it.
func New(opts Options) (*Pool, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	p := &Pool{opts: opts, size: opts.Size, backlog: opts.Backlog, maxParked: opts.MaxParked}
	p.release = p.releaseSlot
	if len(opts.PinCPUs) > 0 {
		p.pinner = newPinner(opts.PinCPUs, opts.Size, opts.Logger)
	}
	// ants runs only admitted tasks, so its own limit is a safety net: MaxSize, blocking. Purge is
	// disabled for pinned pools so a pinned worker thread is kept rather than destroyed every second.
	ap, err := ants.NewPool(MaxSize,
		ants.WithPanicHandler(p.onPanic),
		ants.WithDisablePurge(p.pinner != nil),
		ants.WithLogger(slogAnts{opts.Logger}),
	)
	if err != nil {
		return nil, fmt.Errorf("pool %s: %w", opts.Name, err)
	}
	p.ants = ap
	return p, nil
}

func (p *Pool) onPanic(v any) {
	p.panics.Add(1)
	p.opts.Logger.Error("task panicked", "pool", p.opts.Name, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	if p.opts.OnPanic != nil {
		p.opts.OnPanic(v)
	}
}

// Name returns the pool's name.
func (p *Pool) Name() string { return p.opts.Name }

// Acquire waits for a slot: at once when one is free and nobody waits, else in the FIFO backlog
// until a slot is handed over or ctx ends. It returns ErrBacklogFull when the backlog is full,
// ErrQueueTimeout (wrapping ctx's cause) when ctx ended first, and ErrClosed once the pool is
// released. After a nil error the caller must call release exactly once. Acquire lets a caller run
// the work on its own goroutine; Submit and Do run it on the pool's.
func (p *Pool) Acquire(ctx context.Context) (release func(), err error) {
	return p.AcquireWithin(ctx, 0)
}

// AcquireWithin is Acquire that also gives up after waiting d (0: only ctx bounds the wait). Unlike a context.WithTimeout made
// by the caller, it starts a timer only when the caller really has to wait, which is what the
// threads pool's per-request admission wants: most requests find a slot free.
func (p *Pool) AcquireWithin(ctx context.Context, d time.Duration) (release func(), err error) {
	_, err = p.acquire(ctx, d, nil)
	if err != nil {
		return nil, err
	}
	return p.release, nil
}

// Submit waits for a slot like Acquire, then runs task on a pool goroutine and returns without
// waiting for it. The slot is released when task returns (or panics). While it waits in the
// backlog, a worker that finishes may take task and run it; Submit then returns nil at once.
func (p *Pool) Submit(ctx context.Context, task func()) error {
	return p.SubmitWithin(ctx, 0, task)
}

// SubmitWithin is Submit that gives up waiting for a slot after d (0: only ctx bounds the wait).
func (p *Pool) SubmitWithin(ctx context.Context, d time.Duration, task func()) error {
	taken, err := p.acquire(ctx, d, task)
	if err != nil || taken {
		return err
	}
	return p.start(task)
}

// start runs task, which holds a slot, on an ants worker (in a pinned pool, on an idle pinned
// worker if one waits); the worker then takes the tasks queued behind it (next). On failure the
// slot is released.
func (p *Pool) start(task func()) error {
	p.tasks.Add(1)
	var err error
	switch {
	case p.pinner == nil:
		err = p.ants.Submit(func() {
			for t := task; t != nil; t = p.next() {
				p.run(t)
			}
		})
	case p.pinner.claim():
		p.pinner.work <- task // the claimed worker is parked, or about to be
	default:
		err = p.ants.Submit(func() { p.pinnedWorker(task) })
	}
	if err != nil {
		p.tasks.Done()
		p.releaseSlot()
		if errors.Is(err, ants.ErrPoolClosed) {
			return ErrClosed
		}
		return fmt.Errorf("pool %s: submit: %w", p.opts.Name, err)
	}
	return nil
}

// Go runs task on a pool goroutine without blocking the caller: at once when a slot is free, else
// from the FIFO backlog when one frees up. It returns ErrBacklogFull when the backlog is full and
// ErrClosed once the pool is released; task then never runs. Should ctx end, or the pool close,
// while task waits in the backlog, task is dropped and dropped is called instead, with
// ErrQueueTimeout wrapping ctx's cause or with ErrClosed, on whichever goroutine ended the wait
// (never the caller of Go, and never under the pool's lock). Exactly one of task and dropped runs
// after a nil error.
//
// Go is Submit for a caller that has many tasks to queue and nothing to do while they wait, such
// as a dispatcher handing out prefetched jobs: no goroutine is parked per waiting task.
func (p *Pool) Go(ctx context.Context, task func(), dropped func(error)) error {
	p.mu.Lock()
	admitted, err := p.admitLocked()
	if admitted || err != nil {
		p.mu.Unlock()
		if err != nil {
			return err
		}
		return p.start(task)
	}
	w := &waiter{task: task, dropped: dropped, queued: true}
	w.elem = p.waiters.PushBack(w)
	// Set stop before anyone can take w: they call it, and they need mu, held here.
	w.stop = context.AfterFunc(ctx, func() {
		p.mu.Lock()
		queued := w.queued
		if queued {
			p.waiters.Remove(w.elem)
			w.queued = false
		}
		p.mu.Unlock()
		if queued {
			p.rejected.Add(1)
			dropped(fmt.Errorf("%w: %w", ErrQueueTimeout, context.Cause(ctx)))
		}
	})
	p.mu.Unlock()
	return nil
}

// run runs one admitted task, recovering a panic so the worker goes on to the next task.
func (p *Pool) run(task func()) {
	defer p.tasks.Done()
	defer func() {
		if v := recover(); v != nil {
			p.onPanic(v)
		}
	}()
	task()
}

// Do is Submit that waits for task to finish. A panic in task is recovered by the pool, logged,
// and Do returns normally.
func (p *Pool) Do(ctx context.Context, task func()) error {
	done := make(chan struct{})
	if err := p.Submit(ctx, func() { defer close(done); task() }); err != nil {
		return err
	}
	<-done
	return nil
}

// Tune changes the pool's size. Growing admits waiters at once; shrinking lets running tasks
// finish and admits no new one until running drops below the new size. In a pinned pool,
// shrinking also ends the OS threads of the pinned workers beyond the new size: idle ones at once,
// busy ones when their tasks are done. It returns the old size.
func (p *Pool) Tune(size int) (int, error) {
	if err := ValidateSize(size); err != nil {
		return 0, fmt.Errorf("pool %s: size: %w", p.opts.Name, err)
	}
	var starts []*waiter
	p.mu.Lock()
	old := p.size
	p.size = size
	for p.running < p.activeLocked() && p.waiters.Len() > 0 {
		p.running++
		if w := p.handOffLocked(); w != nil {
			starts = append(starts, w)
		}
	}
	if p.pinner != nil {
		p.pinner.resize(size)
	}
	p.mu.Unlock()
	for _, w := range starts {
		p.startHandedOff(w)
	}
	return old, nil
}

// SetPinCPUs moves a pinned pool's workers to cpus, as when the container's CPU set changed:
// each worker re-pins its thread, round-robin over cpus, before its next task (a task running
// meanwhile ends where it is). It reports false, changing nothing, for a pool that pins no
// worker (Options.PinCPUs empty).
func (p *Pool) SetPinCPUs(cpus []int) (bool, error) {
	if p.pinner == nil {
		return false, nil
	}
	if len(cpus) == 0 {
		return false, errors.New("pool: SetPinCPUs: no CPU to pin to")
	}
	p.pinner.setCPUs(cpus)
	return true, nil
}

// SetBacklog changes how many callers may wait. Shrinking refuses none already waiting.
// It returns the old backlog.
func (p *Pool) SetBacklog(n int) (int, error) {
	if err := ValidateBacklog(n); err != nil {
		return 0, fmt.Errorf("pool %s: backlog: %w", p.opts.Name, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.backlog
	p.backlog = n
	return old, nil
}

// Size returns how many tasks may run at once.
func (p *Pool) Size() int { p.mu.Lock(); defer p.mu.Unlock(); return p.size }

// Running returns how many tasks hold a slot.
func (p *Pool) Running() int { p.mu.Lock(); defer p.mu.Unlock(); return p.running }

// Waiting returns how many callers wait in the backlog.
func (p *Pool) Waiting() int { p.mu.Lock(); defer p.mu.Unlock(); return p.waiters.Len() }

// Free returns how many slots are free right now (within the limit, SetLimit).
func (p *Pool) Free() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(p.activeLocked()-p.running, 0)
}

// Stats returns a consistent snapshot.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{
		Name: p.opts.Name, Size: p.size, Running: p.running, Waiting: p.waiters.Len(),
		Backlog: p.backlog, Parked: p.parked, Rejected: p.rejected.Load(), Panics: p.panics.Load(),
	}
}

// Release closes the pool, like ants' ReleaseContext: waiters and new callers get ErrClosed; tasks
// already admitted run to the end, and Release waits for them until ctx ends. Releasing again
// only waits for them again.
func (p *Pool) Release(ctx context.Context) error {
	var dropped []*waiter
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		for p.waiters.Len() > 0 {
			w := p.waiters.Remove(p.waiters.Front()).(*waiter)
			if w.ready == nil {
				w.queued = false
				dropped = append(dropped, w)
				continue
			}
			w.err = ErrClosed
			close(w.ready)
		}
	}
	p.mu.Unlock()
	if p.pinner != nil {
		p.pinner.close()
	}
	for _, w := range dropped {
		w.stop()
		w.dropped(ErrClosed)
	}
	done := make(chan struct{})
	go func() { p.tasks.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("pool %s: release: %w", p.opts.Name, ctx.Err())
	}
	if err := p.ants.ReleaseTimeout(time.Second); err != nil && !errors.Is(err, ants.ErrPoolClosed) {
		return fmt.Errorf("pool %s: release: %w", p.opts.Name, err)
	}
	return nil
}

// slogAnts adapts slog to ants' Printf logger.
type slogAnts struct{ l *slog.Logger }

func (s slogAnts) Printf(format string, args ...any) {
	s.l.Warn(fmt.Sprintf(format, args...), "component", "ants")
}
