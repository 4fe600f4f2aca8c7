package pool

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"
)

func newParkPool(t *testing.T, size, backlog, maxParked int) *Pool {
	t.Helper()
	p := newTestPool(t, size, backlog)
	if _, err := p.SetMaxParked(maxParked); err != nil {
		t.Fatal(err)
	}
	return p
}

// hold takes a slot into a Held and returns a context that carries it.
func hold(t *testing.T, p *Pool) (*Held, context.Context) {
	t.Helper()
	h := &Held{}
	if err := p.HoldWithin(context.Background(), 0, h); err != nil {
		t.Fatal(err)
	}
	return h, ContextWithHeld(context.Background(), h)
}

// eventually polls cond for up to 5 s: the state it waits for is reached by another goroutine.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 5000 && !cond(); i++ {
		time.Sleep(time.Millisecond)
	}
	if !cond() {
		t.Fatalf("gave up waiting for %s", what)
	}
}

// A slot holder blocked in Wait does not hold its slot: another caller of a pool of one runs
// meanwhile, and the holder has a slot again once Wait returns.
func TestWaitLendsTheSlot(t *testing.T) {
	p := newParkPool(t, 1, 0, 1)
	h, ctx := hold(t, p)
	var otherErr error
	Wait(ctx, func() {
		if got := p.Parked(); got != 1 {
			t.Errorf("Parked() = %d during the wait, want 1", got)
		}
		// Backlog 0: this is refused at once unless the slot is free.
		release, err := p.Acquire(context.Background())
		if otherErr = err; err == nil {
			release()
		}
	})
	if otherErr != nil {
		t.Fatalf("another caller during the wait: %v, want a slot", otherErr)
	}
	if got := p.Running(); got != 1 {
		t.Errorf("Running() = %d after Wait, want 1 (the holder has its slot back)", got)
	}
	if got := p.Parked(); got != 0 {
		t.Errorf("Parked() = %d after Wait, want 0", got)
	}
	h.Release()
	h.Release() // once only
	if got := p.Running(); got != 0 {
		t.Errorf("Running() = %d after Release, want 0", got)
	}
}

// Parking is bounded by MaxParked: past it Wait keeps the slot.
func TestWaitParksAtMostMaxParked(t *testing.T) {
	p := newParkPool(t, 2, 0, 1)
	h1, ctx1 := hold(t, p)
	h2, ctx2 := hold(t, p)
	in, out := make(chan struct{}), make(chan struct{})
	go Wait(ctx1, func() { close(in); <-out })
	<-in
	Wait(ctx2, func() {
		if got := p.Parked(); got != 1 {
			t.Errorf("Parked() = %d, want 1 (the limit)", got)
		}
		if got := p.Running(); got != 1 {
			t.Errorf("Running() = %d, want 1: the second waiter keeps its slot", got)
		}
	})
	close(out)
	eventually(t, "the first waiter to take its slot back", func() bool { return p.Parked() == 0 && p.Running() == 2 })
	h1.Release()
	h2.Release()
	if got := p.Running(); got != 0 {
		t.Errorf("Running() = %d, want 0", got)
	}
}

// With MaxParked 0 (the zero value) nothing parks.
func TestWaitMaxParkedZeroKeepsTheSlot(t *testing.T) {
	p := newTestPool(t, 1, 0)
	h, ctx := hold(t, p)
	defer h.Release()
	Wait(ctx, func() {
		if _, err := p.Acquire(context.Background()); !errors.Is(err, ErrBacklogFull) {
			t.Errorf("Acquire during an unparked wait = %v, want ErrBacklogFull", err)
		}
	})
}

// A parked caller takes its slot back ahead of the callers in the backlog, beyond its limit.
func TestWaitResumesAheadOfTheBacklog(t *testing.T) {
	p := newParkPool(t, 1, 1, 1)
	h, ctx := hold(t, p)
	var releaseB func()
	cGot := make(chan error, 1)
	Wait(ctx, func() {
		var err error
		if releaseB, err = p.Acquire(context.Background()); err != nil { // B takes the lent slot
			t.Fatal(err)
		}
		go func() { // C waits in the backlog
			release, err := p.Acquire(context.Background())
			if err == nil {
				defer release()
			}
			cGot <- err
		}()
		eventually(t, "C in the backlog", func() bool { return p.Waiting() == 1 })
		go func() {
			eventually(t, "the holder in the backlog too", func() bool { return p.Waiting() == 2 })
			releaseB()
		}()
	})
	// B's slot went to the holder, not to C, who still waits.
	if got := p.Waiting(); got != 1 {
		t.Fatalf("Waiting() = %d after Wait, want 1 (C)", got)
	}
	h.Release()
	if err := <-cGot; err != nil {
		t.Fatalf("C: %v", err)
	}
}

// A pool released while a caller is parked: the caller gets no slot back, and its Release
// does not give one it does not hold.
func TestWaitPoolReleasedWhileParked(t *testing.T) {
	p, err := New(Options{Name: "test", Size: 1, MaxParked: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	h, ctx := hold(t, p)
	Wait(ctx, func() {
		if err := p.Release(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	h.Release()
	if got := p.Running(); got != 0 {
		t.Errorf("Running() = %d, want 0", got)
	}
}

// The holder released while a Wait of another goroutine still has the slot lent: the Wait gives
// it back when it ends, once.
func TestWaitHolderReleasedWhileParked(t *testing.T) {
	p := newParkPool(t, 1, 0, 1)
	h, ctx := hold(t, p)
	in, out, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() { defer close(done); Wait(ctx, func() { close(in); <-out }) }()
	<-in
	h.Release()
	close(out)
	<-done
	if got := p.Running(); got != 0 {
		t.Errorf("Running() = %d, want 0", got)
	}
	if got := p.Parked(); got != 0 {
		t.Errorf("Parked() = %d, want 0", got)
	}
}

// Wait without a Held in its context just runs; a panic in a parked wait takes the slot back.
func TestWaitWithoutHeldAndPanic(t *testing.T) {
	p := newParkPool(t, 1, 0, 1)
	ran := false
	Wait(context.Background(), func() { ran = true })
	if !ran {
		t.Fatal("Wait without a Held did not run wait")
	}
	h, ctx := hold(t, p)
	func() {
		defer func() { _ = recover() }()
		Wait(ctx, func() { panic("boom") })
	}()
	if got := p.Running(); got != 1 {
		t.Errorf("Running() = %d after a panicking wait, want 1", got)
	}
	h.Release()
}

func TestNewValidatesMaxParked(t *testing.T) {
	if _, err := New(Options{Size: 1, MaxParked: -1}); !errors.Is(err, ErrInvalidSize) {
		t.Errorf("MaxParked -1: %v, want ErrInvalidSize", err)
	}
}
