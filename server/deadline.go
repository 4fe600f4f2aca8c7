package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/tandem-run/tandem/pool"
)

// epoch anchors deadlines kept as integers; times derived from it keep the monotonic clock.
var epoch = time.Now()

// deadlineCtx is context.WithDeadlineCause made lazily: the timer and the cancelable context
// exist only once someone asks for Done (a handler that waits on its context), or once the
// context has ended and someone asks for Err, Value or Cause. Most handlers never wait on their
// context, and on 2 cores the timer that WithTimeout arms and stops for every request cost 5-7%
// of /demo/hello's throughput (bench/http.sh, H1). Until then Err reads the clock, so a handler
// that polls ctx.Err() still sees the deadline on time.
//
// The deadline is set once by arm, possibly after the context was handed out (requestCtx is made
// before admission knows the request will run), hence the atomics.
type deadlineCtx struct {
	context.Context // the parent

	deadline atomic.Int64 // when the context ends, as nanoseconds since epoch; 0: no deadline
	released atomic.Bool  // the request is over: a context made now is born canceled
	inner    atomic.Pointer[lazyCtx]
	mu       sync.Mutex // serialises arm, real and release
	cause    error      // under mu
}

type lazyCtx struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// arm gives the context its deadline. It reports false when it cannot any more: the context was
// armed before, or someone already waits on it (its real context is made without a deadline).
func (c *deadlineCtx) arm(deadline time.Time, cause error) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inner.Load() != nil || c.deadline.Load() != 0 {
		return false
	}
	c.cause = cause
	c.deadline.Store(max(1, int64(deadline.Sub(epoch))))
	return true
}

func (c *deadlineCtx) when() (time.Time, bool) {
	n := c.deadline.Load()
	if n == 0 {
		return time.Time{}, false
	}
	return epoch.Add(time.Duration(n)), true
}

// expired reports whether the deadline has passed.
func (c *deadlineCtx) expired() bool {
	n := c.deadline.Load()
	return n != 0 && int64(time.Since(epoch)) >= n
}

// settled reports whether the context has ended, whether or not its real context exists.
func (c *deadlineCtx) settled() bool { return c.released.Load() || c.expired() }

// real returns the standard context this one stands for, making it on first use.
func (c *deadlineCtx) real() context.Context {
	if in := c.inner.Load(); in != nil {
		return in.ctx
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if in := c.inner.Load(); in != nil {
		return in.ctx
	}
	var ctx context.Context
	var cancel context.CancelFunc
	if d, ok := c.when(); ok {
		ctx, cancel = context.WithDeadlineCause(c.Context, d, c.cause)
	} else {
		ctx, cancel = context.WithCancel(c.Context)
	}
	if c.released.Load() {
		cancel()
	}
	c.inner.Store(&lazyCtx{ctx: ctx, cancel: cancel})
	return ctx
}

// Deadline reports the earlier of the parent's deadline and this one, as WithDeadline does.
func (c *deadlineCtx) Deadline() (time.Time, bool) {
	d, ok := c.when()
	pd, pok := c.Context.Deadline()
	if !ok || (pok && pd.Before(d)) {
		return pd, pok
	}
	return d, true
}

// Done makes the real context: only a caller that waits pays for the timer.
func (c *deadlineCtx) Done() <-chan struct{} { return c.real().Done() }

// Err is the parent's error, DeadlineExceeded once the deadline has passed, or Canceled once the
// request is over.
func (c *deadlineCtx) Err() error {
	if in := c.inner.Load(); in != nil {
		return in.ctx.Err()
	}
	if err := c.Context.Err(); err != nil {
		return err
	}
	if c.settled() {
		return c.real().Err()
	}
	return nil
}

// Value answers through the real context once there is one, or once the context has ended, so
// context.Cause (which finds the nearest cancelable context through Value) returns the cause.
func (c *deadlineCtx) Value(key any) any {
	if in := c.inner.Load(); in != nil {
		return in.ctx.Value(key)
	}
	if c.settled() {
		return c.real().Value(key)
	}
	return c.Context.Value(key)
}

// release ends the context when its request is done, like the CancelFunc of WithDeadline: it
// stops the timer if there is one and cancels what the handler derived from it.
func (c *deadlineCtx) release() {
	c.mu.Lock()
	c.released.Store(true)
	in := c.inner.Load()
	c.mu.Unlock()
	if in != nil {
		in.cancel()
	}
}

// requestCtx is the context of every request on both listeners, made once by requestID: the
// request id, chi's route context (seeded outside the router so the access log and metrics can
// read the matched pattern), and a deadline that admission arms in place, so an admitted request
// costs no second context and no second copy of the *http.Request.
type requestCtx struct {
	deadlineCtx
	id     string
	route  *chi.Context
	answer answerWriter // admission's writer, allocated with the rest of the request's state
	status statusWriter // the access log's writer, likewise
	held   pool.Held    // admission's threads-pool slot, for pool.Wait (HeldKey)
}

// Value answers the request id and route context, then defers to the deadline context.
func (c *requestCtx) Value(key any) any {
	switch key {
	case requestIDKey:
		return c.id
	case chi.RouteCtxKey:
		return c.route
	case pool.HeldKey{}:
		return &c.held // holds nothing outside admission (the admin listener, the probes)
	}
	return c.deadlineCtx.Value(key)
}
