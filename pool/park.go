package pool

import (
	"context"
	"sync/atomic"
	"time"
)

// Parking: a caller that holds a slot and then blocks on something that needs no CPU of this
// process (a durable commit, a database, another service) lends its slot back for the wait, so
// that another caller runs meanwhile instead of the pool sitting idle at its size. An HTTP request
// that waits for its job's group commit is the case in point: with 5 threads, 5 such requests
// used to fill the pool while the disk, not a core, was busy, and the commit they shared carried
// 5 jobs.
//
// How many callers are parked at once is bounded by Options.MaxParked: past it Wait waits with
// the slot held, as if it were not there. A parked caller takes a slot back before Wait returns,
// ahead of the backlog, so at most Size callers run at once outside their waits, as before.

// Held is one caller's slot, which the code it calls can lend back while it waits (Wait). Fill it
// with Pool.HoldWithin and give it back with Release; carry it in a context with ContextWithHeld
// (or a context of one's own that answers HeldKey). Its methods are safe for concurrent use, but
// only the goroutine that holds the slot should call Wait: another one's Wait runs without
// lending the slot while it is lent already. The zero value holds nothing.
type Held struct {
	p     *Pool
	state atomic.Int32 // heldNone, heldHeld, heldParked or heldReleased
}

const (
	heldNone     int32 = iota // no slot: Release and Wait do nothing
	heldHeld                  // the caller holds the slot
	heldParked                // lent back during a Wait, which takes one again before it returns
	heldReleased              // Release was called while parked: the Wait gives it back itself
)

// HeldKey is the context key under which Wait finds the caller's *Held. ContextWithHeld sets it;
// a context type of one's own may answer it instead, saving an allocation per request.
type HeldKey struct{}

// ContextWithHeld returns ctx carrying h, for Wait further down the calls.
func ContextWithHeld(ctx context.Context, h *Held) context.Context {
	return context.WithValue(ctx, HeldKey{}, h)
}

// HoldWithin is AcquireWithin that records the slot in h instead of returning a release func,
// so that Wait can lend it back; h.Release gives it back. h must hold nothing (a zero Held, or one
// released).
func (p *Pool) HoldWithin(ctx context.Context, d time.Duration, h *Held) error {
	if _, err := p.acquire(ctx, d, nil); err != nil {
		return err
	}
	h.p = p
	h.state.Store(heldHeld)
	return nil
}

// Release gives the slot back, once; later calls do nothing. If a Wait still has it lent (it was
// called from another goroutine that outlived the holder), that Wait gives it back instead.
func (h *Held) Release() {
	for {
		switch s := h.state.Load(); s {
		case heldHeld:
			if h.state.CompareAndSwap(s, heldNone) {
				h.p.releaseSlot()
				return
			}
		case heldParked:
			if h.state.CompareAndSwap(s, heldReleased) {
				return
			}
		default:
			return
		}
	}
}

// Wait runs wait, which must block on something other than this process's CPU (a durable commit,
// a database, a remote call), with the slot of the Held that ctx carries lent back to the pool
// meanwhile; it takes a slot again, ahead of the backlog and whatever ctx says, before it
// returns, so the code after it runs with a slot as the code before it did. It runs wait with
// the slot held when ctx carries none, when the pool already has MaxParked callers parked, or when
// the slot is lent already (a second Wait at once). A panic in wait takes the slot back too.
func Wait(ctx context.Context, wait func()) {
	h, _ := ctx.Value(HeldKey{}).(*Held)
	if h == nil || !h.park() {
		wait()
		return
	}
	defer h.resume()
	wait()
}

// park lends the slot back if the pool has room for one more parked caller.
func (h *Held) park() bool {
	if !h.state.CompareAndSwap(heldHeld, heldParked) {
		return false
	}
	p := h.p
	p.mu.Lock()
	if p.closed || p.parked >= p.maxParked {
		p.mu.Unlock()
		if !h.state.CompareAndSwap(heldParked, heldHeld) {
			// Released meanwhile: the holder is gone, so the slot goes back now.
			h.state.Store(heldNone)
			p.releaseSlot()
		}
		return false
	}
	p.parked++
	var start *waiter
	if p.running <= p.size && p.waiters.Len() > 0 {
		start = p.handOffLocked()
	} else {
		p.running--
	}
	p.mu.Unlock()
	p.startHandedOff(start)
	return true
}

// resume takes a slot back after a parked wait: at once when one is free and nobody waits, else
// first in the backlog, beyond its limit and with no timeout (parked callers are bounded by
// MaxParked, and slots free up as callers finish). Once the pool is closed there is no slot to
// take, and the Held holds none.
func (h *Held) resume() {
	p := h.p
	p.mu.Lock()
	p.parked--
	var w *waiter
	switch {
	case p.closed:
		p.mu.Unlock()
		h.state.Store(heldNone)
		return
	case p.running < p.size && p.waiters.Len() == 0:
		p.running++
	default:
		w = &waiter{ready: make(chan struct{})}
		w.elem = p.waiters.PushFront(w)
	}
	p.mu.Unlock()
	if w != nil {
		<-w.ready
		if w.err != nil { // the pool closed meanwhile
			h.state.Store(heldNone)
			return
		}
	}
	if !h.state.CompareAndSwap(heldParked, heldHeld) {
		// Released while parked: the holder is gone, so the slot goes back now.
		h.state.Store(heldNone)
		p.releaseSlot()
	}
}

// Parked returns how many callers have their slot lent back in a Wait.
func (p *Pool) Parked() int { p.mu.Lock(); defer p.mu.Unlock(); return p.parked }

// SetMaxParked changes how many callers may be parked at once; lowering it parks no new one
// until fewer are. It returns the old limit.
func (p *Pool) SetMaxParked(n int) (int, error) {
	if err := ValidateBacklog(n); err != nil {
		return 0, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.maxParked
	p.maxParked = n
	return old, nil
}
