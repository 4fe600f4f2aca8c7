package server

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
)

var errTestCause = errors.New("test cause")

func newTestRequestCtx(parent context.Context) *requestCtx {
	return &requestCtx{deadlineCtx: deadlineCtx{Context: parent}, id: "req-1", route: chi.NewRouteContext()}
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// An unarmed request context is its parent plus two values, until the request is released.
func TestRequestCtxUnarmed(t *testing.T) {
	parent, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	c := newTestRequestCtx(parent)
	if RequestID(c) != "req-1" || chi.RouteContext(c) != c.route {
		t.Fatalf("values: id %q route %p", RequestID(c), chi.RouteContext(c))
	}
	pd, _ := parent.Deadline()
	if d, ok := c.Deadline(); !ok || !d.Equal(pd) {
		t.Errorf("deadline %v %v, want the parent's %v", d, ok, pd)
	}
	if c.Err() != nil || closed(c.Done()) {
		t.Fatalf("ended early: %v", c.Err())
	}
	child, childCancel := context.WithCancel(c)
	defer childCancel()
	c.release()
	if !errors.Is(c.Err(), context.Canceled) || !closed(c.Done()) {
		t.Errorf("after release: err %v, done %v", c.Err(), closed(c.Done()))
	}
	if !closed(child.Done()) { // a derived context ends with the request
		t.Error("derived context still open after release")
	}
	if RequestID(c) != "req-1" {
		t.Error("request id lost after release")
	}
}

// Armed, the context ends at its deadline with DeadlineExceeded and the cause, whether the caller
// polls Err, asks for the cause, or waits on Done.
func TestRequestCtxDeadline(t *testing.T) {
	for _, how := range []string{"err", "cause", "done", "afterfunc", "child"} {
		t.Run(how, func(t *testing.T) {
			c := newTestRequestCtx(context.Background())
			start := time.Now()
			if !c.arm(start.Add(50*time.Millisecond), errTestCause) {
				t.Fatal("arm refused")
			}
			defer c.release()
			if c.arm(start.Add(time.Hour), errTestCause) {
				t.Fatal("armed twice")
			}
			if d, ok := c.Deadline(); !ok || !d.Equal(start.Add(50*time.Millisecond)) {
				t.Errorf("deadline %v %v", d, ok)
			}
			// Every wait is bounded, so a context that never ends fails the test instead of hanging it.
			giveUp := time.After(5 * time.Second)
			wait := func(ch <-chan struct{}) {
				select {
				case <-ch:
				case <-giveUp:
					t.Fatal("never ended")
				}
			}
			poll := func(ended func() bool) {
				for !ended() {
					select {
					case <-giveUp:
						t.Fatal("never ended")
					case <-time.After(time.Millisecond):
					}
				}
			}
			switch how {
			case "err":
				poll(func() bool { return c.Err() != nil })
			case "cause":
				poll(func() bool { return context.Cause(c) != nil })
			case "done":
				wait(c.Done())
			case "afterfunc":
				ran := make(chan struct{})
				context.AfterFunc(c, func() { close(ran) })
				wait(ran)
			case "child":
				child, cancel := context.WithTimeout(c, time.Hour)
				defer cancel()
				if d, _ := child.Deadline(); !d.Equal(start.Add(50 * time.Millisecond)) {
					t.Errorf("child deadline %v", d)
				}
				wait(child.Done())
				if context.Cause(child) != errTestCause {
					t.Errorf("child cause %v", context.Cause(child))
				}
			}
			if el := time.Since(start); el < 50*time.Millisecond {
				t.Errorf("ended after %s, before its deadline", el)
			}
			if !errors.Is(c.Err(), context.DeadlineExceeded) || context.Cause(c) != errTestCause || !c.expired() {
				t.Errorf("err %v cause %v", c.Err(), context.Cause(c))
			}
			if !closed(c.Done()) {
				t.Error("Done open after the deadline")
			}
		})
	}
}

// The parent's end reaches a waiting caller; a context waited on before arming cannot be armed.
func TestRequestCtxParentAndLateArm(t *testing.T) {
	parent, cancel := context.WithCancelCause(context.Background())
	c := newTestRequestCtx(parent)
	done := c.Done()
	if c.arm(time.Now().Add(time.Hour), errTestCause) {
		t.Error("armed after Done was handed out")
	}
	cancel(errTestCause)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the parent's end did not reach Done")
	}
	if !errors.Is(c.Err(), context.Canceled) || context.Cause(c) != errTestCause {
		t.Errorf("err %v cause %v", c.Err(), context.Cause(c))
	}
}

// Concurrent use while arming and releasing (run with -race).
func TestRequestCtxConcurrent(t *testing.T) {
	for range 50 {
		c := newTestRequestCtx(context.Background())
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				for range 20 {
					_ = c.Err()
					_, _ = c.Deadline()
					_ = c.Value(requestIDKey)
					if i == 0 {
						_ = c.Done()
					}
				}
			})
		}
		c.arm(time.Now().Add(time.Millisecond), errTestCause)
		c.release()
		wg.Wait()
		if c.Err() == nil {
			t.Fatal("released context has no error")
		}
	}
}
