package pool

import (
	"log/slog"
	"sync"
	"sync/atomic"
)

// pinner pins each pool worker's OS thread to one CPU the first time the worker runs a task.
//
// ants gives no hook when it starts a worker goroutine, so the pinner recognises a worker by the
// thread it runs on: PinThread locks the goroutine to its thread for good, so a thread id seen
// before belongs to a worker pinned before. When a worker goroutine exits, Go destroys its locked
// thread, so a pinned thread never runs other goroutines. Should the kernel hand a stale id to a
// new thread, the only effect is that one worker runs unpinned: the pinner never pins a thread it
// did not lock itself.
type pinner struct {
	cpus   []int
	next   atomic.Uint64
	mu     sync.Mutex
	pinned map[int]int // thread id -> CPU
}

func newPinner(cpus []int) *pinner {
	return &pinner{cpus: append([]int(nil), cpus...), pinned: make(map[int]int)}
}

// pin pins the calling worker's thread unless it is pinned already.
func (p *pinner) pin(log *slog.Logger) {
	tid := Gettid()
	p.mu.Lock()
	_, done := p.pinned[tid]
	p.mu.Unlock()
	if done {
		return
	}
	cpu := p.cpus[int(p.next.Add(1)-1)%len(p.cpus)]
	if err := PinThread(cpu); err != nil {
		// Pinning is an optimisation: the job still runs, on a thread locked but not pinned.
		log.Warn("pin worker thread", "cpu", cpu, "err", err)
	}
	p.mu.Lock()
	p.pinned[Gettid()] = cpu
	p.mu.Unlock()
}

// CPUOf returns the CPU the calling worker's thread was pinned to, and whether it was. Handlers use
// it for logs and tests; it is cheap.
func (p *Pool) CPUOf(tid int) (int, bool) {
	if p.pinner == nil {
		return 0, false
	}
	p.pinner.mu.Lock()
	defer p.pinner.mu.Unlock()
	cpu, ok := p.pinner.pinned[tid]
	return cpu, ok
}
