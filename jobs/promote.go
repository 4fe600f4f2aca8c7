package jobs

import (
	"context"
	"time"
)

// promoteLoop moves delayed and retrying jobs to ready when their time comes, sleeping until the
// next one is due (at most a second, so a clock change is noticed) or a new one arrives.
func (r *Runtime) promoteLoop(ctx context.Context) {
	for {
		var moved int
		var next time.Time
		var err error
		if r.leader.Load() { // on a Shared store one replica promotes for all
			moved, next, err = r.store.Promote(ctx, r.opts.Now())
		}
		if err != nil && ctx.Err() == nil {
			r.log.Error("promote delayed jobs", "err", err)
		}
		if moved > 0 {
			r.signal(r.wake)
		}
		wait := time.Second
		if !next.IsZero() {
			wait = min(max(next.Sub(r.opts.Now()), time.Millisecond), time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.promote:
		case <-t.C:
		}
		t.Stop()
	}
}
