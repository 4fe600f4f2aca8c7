package pool

import (
	"container/list"
	"context"
	"fmt"
	"time"
)

// The backlog: callers and tasks waiting for a slot, in FIFO order, and the ways a slot passes
// from one holder to the next waiter without going back to the pool.

// waiter is one entry of the backlog: an Acquire or Submit caller parked on ready, or a Go task
// that nobody waits for.
type waiter struct {
	ready chan struct{} // closed when the waiter's turn was decided; nil for Go's waiters
	err   error         // set before ready is closed: nil means a slot was handed over
	elem  *list.Element
	task  func() // Submit's or Go's task, which a finishing worker may take (next); nil for Acquire
	taken bool   // set before ready is closed: a worker took task and runs it

	// Go's waiters: nobody waits on ready; the task is started where the slot is handed over,
	// or dropped (and dropped called) when its context ends or the pool closes first.
	dropped func(error)
	stop    func() bool // stops the context.AfterFunc that drops it
	queued  bool        // still in waiters; guarded by mu
}

// admitLocked decides a newcomer's turn, with mu held: it takes a free slot at once (true) when
// nobody waits, refuses with ErrClosed or ErrBacklogFull, or leaves the caller to join the backlog
// (false, nil). Acquire, Submit and Go all enter through it.
func (p *Pool) admitLocked() (bool, error) {
	switch {
	case p.closed:
		return false, ErrClosed
	case p.running < p.activeLocked() && p.waiters.Len() == 0:
		p.running++
		return true, nil
	case p.waiters.Len() >= p.backlog:
		p.rejected.Add(1)
		return false, ErrBacklogFull
	}
	return false, nil
}

// acquire waits for a slot. A waiter with a task (Submit's) may instead have its task taken by a
// worker that finished its own: then taken is true, the task runs on that worker, and the caller
// holds no slot.
func (p *Pool) acquire(ctx context.Context, within time.Duration, task func()) (taken bool, err error) {
	p.mu.Lock()
	if admitted, err := p.admitLocked(); admitted || err != nil {
		p.mu.Unlock()
		return false, err
	}
	w := &waiter{ready: make(chan struct{}), task: task}
	w.elem = p.waiters.PushBack(w)
	p.mu.Unlock()

	var timeout <-chan time.Time
	if within > 0 {
		t := time.NewTimer(within)
		defer t.Stop()
		timeout = t.C
	}
	cause := error(nil)
	select {
	case <-w.ready:
		return w.taken, w.err
	case <-ctx.Done():
		cause = context.Cause(ctx)
	case <-timeout:
		cause = fmt.Errorf("waited %s", within)
	}
	p.mu.Lock()
	select {
	case <-w.ready:
		p.mu.Unlock()
		if w.err != nil || w.taken {
			// Taken as ctx ended: the task is running, so the caller is told it was submitted.
			return w.taken, w.err
		}
		// The slot arrived as ctx ended: we own it, so pass it on.
		p.releaseSlot()
	default:
		p.waiters.Remove(w.elem)
		p.mu.Unlock()
	}
	p.rejected.Add(1)
	return false, fmt.Errorf("%w: %w", ErrQueueTimeout, cause)
}

// releaseSlot returns a slot, handing it to the first waiter unless the pool shrank (or was
// limited, SetLimit) below the number running.
func (p *Pool) releaseSlot() {
	var start *waiter
	p.mu.Lock()
	if p.running <= p.activeLocked() && p.waiters.Len() > 0 {
		start = p.handOffLocked()
	} else {
		p.running--
	}
	p.mu.Unlock()
	p.startHandedOff(start)
}

// handOffLocked gives the caller's slot to the first waiter; running stays the same. A waiter of
// Go is returned: nobody waits for it, so the caller starts its task (startHandedOff) once it
// has released mu.
func (p *Pool) handOffLocked() *waiter {
	w := p.waiters.Remove(p.waiters.Front()).(*waiter)
	if w.ready == nil {
		w.queued = false
		return w
	}
	close(w.ready)
	return nil
}

// startHandedOff starts the task of a Go waiter that was handed a slot; nil does nothing.
func (p *Pool) startHandedOff(w *waiter) {
	if w == nil {
		return
	}
	w.stop()
	if err := p.start(w.task); err != nil {
		w.dropped(err)
	}
}

// next is called by a worker whose task ended. If the slot passes to a waiter that brought a task,
// the worker takes that task and returns it to run next, so a busy worker keeps its goroutine
// instead of parking it and waking another per task. For a pinned worker that saves two OS thread
// switches per task: Go hands the P to a goroutine's locked thread each time it wakes and passes it
// on each time it parks. Otherwise next releases the slot as releaseSlot does and returns nil.
func (p *Pool) next() func() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running > p.activeLocked() || p.waiters.Len() == 0 {
		p.running--
		if p.pinner != nil {
			p.pinner.goingIdle()
		}
		return nil
	}
	w := p.waiters.Front().Value.(*waiter)
	if w.task == nil {
		p.handOffLocked()
		if p.pinner != nil {
			p.pinner.goingIdle()
		}
		return nil
	}
	p.waiters.Remove(w.elem)
	w.taken = true
	p.tasks.Add(1)
	if w.ready == nil {
		// A Go waiter: its AfterFunc finds it gone and drops nothing. Stopping it here, under
		// mu, is cheap: stop does not wait for a running AfterFunc.
		w.queued = false
		w.stop()
	} else {
		close(w.ready)
	}
	return w.task
}
