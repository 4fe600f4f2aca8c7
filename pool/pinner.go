package pool

import (
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/tandem-run/tandem/sizing"
)

// pinner runs a pinned pool's workers: each pins its OS thread to one CPU when it starts, keeps it
// for good, and waits for its next task itself instead of going back to ants.
//
// It owns the idle workers so that a shrinking pool can end the ones it no longer needs: ants
// keeps idle workers of a pinned pool for good (purge is off, so as not to destroy a pinned thread
// every second) and its own shrinking only ends workers that finish a task while it runs more than
// its capacity, which a pool gated in front of ants never does. A worker beyond the pool's size
// leaves with runtime.Goexit while still locked to its thread, and Go then ends the thread.
//
// A worker's thread id is its key in pinned: the goroutine is locked to that thread for good, and
// the entry goes before the thread does. Idle workers are counted (goingIdle) in the same step
// that frees their slot, so a task that takes the slot is handed to one of them (claim) instead of
// starting a worker beyond the size.
type pinner struct {
	next atomic.Uint64
	gen  atomic.Uint64 // the CPU set's generation (setCPUs): a worker pinned for an older one moves
	log  *slog.Logger
	work chan func() // a task handed to an idle worker that claim counted

	mu     sync.Mutex
	cpus   []int         // the CPUs workers are pinned to, round-robin
	free   []int         // the CPUs an unpinned thread may use, restored on the main thread when it retires
	pinned map[int]int   // thread id -> CPU, of the pinned workers alive
	size   int           // the pool's size, as Tune last set it
	idle   int           // idle workers no task is on its way to: what claim may take
	wake   chan struct{} // closed (and replaced) by resize and close: idle workers look again
	closed bool
}

func newPinner(cpus []int, size int, log *slog.Logger) *pinner {
	// The calling goroutine is not a worker, so its thread is not pinned: its affinity is the
	// process's.
	free, err := sizing.Affinity()
	if err != nil {
		free = cpus
	}
	return &pinner{cpus: append([]int(nil), cpus...), free: free, log: log, work: make(chan func()),
		pinned: make(map[int]int), size: size, wake: make(chan struct{})}
}

// pinnedWorker is the body of a pinned pool's ants task: it pins its thread, runs task and the
// tasks queued behind it, then waits in park for more until the pool closes or no longer needs it.
func (p *Pool) pinnedWorker(task func()) {
	gen := p.pinner.pin()
	for task != nil {
		for t := task; t != nil; t = p.next() {
			if p.pinner.gen.Load() != gen { // the CPU set changed since this thread was pinned
				gen = p.pinner.place(Gettid())
			}
			p.run(t)
		}
		task = p.pinner.park()
	}
}

// pin locks the calling worker to its thread for good and pins the thread, unless it is pinned
// already (a goroutine ants hands a new worker after the pool closed), and returns the CPU set's
// generation it pinned for. The thread id is read only once the goroutine is locked: read before,
// it may be the id of a thread another worker locks and pins in the meantime.
func (p *pinner) pin() uint64 {
	runtime.LockOSThread()
	tid := Gettid()
	p.mu.Lock()
	_, done := p.pinned[tid]
	p.mu.Unlock()
	if done {
		return 0 // place checks it against the CPU set before its next task
	}
	return p.place(tid)
}

// place pins the calling thread (locked, id tid) to the next CPU of the current set, and returns
// that set's generation.
func (p *pinner) place(tid int) uint64 {
	p.mu.Lock()
	gen := p.gen.Load()
	cpu := p.cpus[int(p.next.Add(1)-1)%len(p.cpus)]
	p.mu.Unlock()
	if err := setAffinity([]int{cpu}); err != nil {
		// Pinning is an optimisation: the job still runs, on a thread locked but not pinned.
		p.log.Warn("pin worker thread", "cpu", cpu, "err", err)
	}
	p.mu.Lock()
	p.pinned[tid] = cpu
	p.mu.Unlock()
	return gen
}

// setCPUs makes cpus the set workers are pinned to (and an unpinned thread's): each pinned
// worker moves its thread before its next task; a task running meanwhile ends where it is.
func (p *pinner) setCPUs(cpus []int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cpus, p.free = append([]int(nil), cpus...), append([]int(nil), cpus...)
	p.next.Store(0)
	p.gen.Add(1)
}

// goingIdle counts a worker whose tasks ran out as idle. next calls it under the pool's lock, in
// the same step that frees the worker's slot, so whoever takes the slot finds the worker to claim
// rather than starting another one; park then waits for the task.
func (p *pinner) goingIdle() {
	p.mu.Lock()
	p.idle++
	p.mu.Unlock()
}

// claim takes one idle worker for a task the caller then sends on work; false when none is idle.
func (p *pinner) claim() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.idle == 0 {
		return false
	}
	p.idle--
	return true
}

// park waits, after goingIdle, for a task claimed for an idle worker, and returns it. It returns
// nil once the pool is closed, and ends the worker (it never returns) while the pool has more
// pinned workers than its size and no claimed task needs this one.
func (p *pinner) park() func() {
	for {
		p.mu.Lock()
		tid := Gettid()
		_, mine := p.pinned[tid]
		leave := p.idle > 0 && (p.closed || mine && len(p.pinned) > p.size)
		if leave {
			p.idle--
			delete(p.pinned, tid)
		}
		closed, wake := p.closed, p.wake
		p.mu.Unlock()
		switch {
		case leave && closed:
			return nil // back to ants, which ends it as the pool releases
		case leave:
			p.retire(tid)
		case closed:
			return <-p.work // claimed before the close: every idle worker left has a task coming
		}
		select {
		case t := <-p.work:
			return t
		case <-wake:
		}
	}
}

// retire ends the calling worker, already struck from pinned, and with it its thread: a goroutine
// that exits still locked to its thread makes Go end the thread. ants' worker goroutine accounts
// for a Goexit as for a panic: it counts the worker gone and wakes a waiter.
func (p *pinner) retire(tid int) {
	if tid == os.Getpid() {
		// Go never ends the process's main thread: when its locked goroutine exits it parks it
		// for good. Unpin it first, so no pinned thread stays behind.
		p.mu.Lock()
		free := p.free
		p.mu.Unlock()
		if err := setAffinity(free); err != nil {
			p.log.Warn("unpin the main thread", "err", err)
		}
	}
	runtime.Goexit()
}

// resize records the pool's new size and wakes the idle workers, so those beyond it end.
// Busy ones beyond it end when their tasks run out. Tune calls it under the pool's lock.
func (p *pinner) resize(size int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.size = size
	close(p.wake)
	p.wake = make(chan struct{})
}

// close sends the idle workers back to ants, which ends them as the pool releases; tasks already
// claimed still reach theirs.
func (p *pinner) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		close(p.wake)
	}
}
