// Package autoscale sizes tandem's two pools by themselves, within bounds the operator sets:
//
//   - HTTP is an adaptive concurrency limit in the manner of Netflix's concurrency-limits gradient:
//     it compares each route's recent service time with the lowest that route has had lately,
//     raises the thread count while they stay close (an I/O-bound app: more threads, more
//     throughput), by up to double when requests queue, and lowers it when latency climbs (a
//     CPU-bound app: more threads only queue on the cores).
//   - Jobs grows the worker pool while jobs wait and the process has CPU to spare, like Celery's
//     --autoscale=max,min: to as many workers as there are jobs, up to max and to what the spare
//     CPU can feed, in one step.
//   - Both shrink after a quiet period (nothing waiting, at most half the pool busy) to twice the
//     most they used in it, at least min, in one step.
//
// A manual resize pins a pool (its controller stops) until Unpin. Each controller is a small service
// with Start and Stop; its Tick can be driven directly, with the time it is given as its clock,
// which is how the tests run it.
package autoscale

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Pool is what a controller resizes (a *pool.Pool, or the jobs runtime's Resize for the jobs pool).
type Pool interface {
	Size() int
	Running() int
	Waiting() int
}

// Bounds are a controller's range.
type Bounds struct{ Min, Max int }

func (b Bounds) validate() error {
	if b.Min < 1 || b.Max < b.Min {
		return fmt.Errorf("autoscale: need 1 <= min <= max, got min %d max %d", b.Min, b.Max)
	}
	return nil
}

func (b Bounds) clamp(n int) int { return min(max(n, b.Min), b.Max) }

// base is what both controllers share: bounds, pinning, the resize hook, the tick loop.
type base struct {
	name     string
	bounds   Bounds
	interval time.Duration
	pool     Pool
	resize   func(n int, reason string) (int, error)
	paused   func() bool
	log      *slog.Logger
	onChange func(pool string, old, new int, reason string)

	stop context.CancelFunc
	wg   sync.WaitGroup
}

// isPaused reports whether the pool is pinned by a manual resize (Options.Paused).
func (b *base) isPaused() bool { return b.paused != nil && b.paused() }

// apply moves the pool to n (clamped) and reports the change.
func (b *base) apply(n int, reason string) {
	n = b.bounds.clamp(n)
	old := b.pool.Size()
	if n == old {
		return
	}
	if _, err := b.resize(n, reason); err != nil {
		b.log.Error("autoscale resize", "pool", b.name, "size", n, "err", err)
		return
	}
	b.log.Info("autoscale", "pool", b.name, "old", old, "new", n, "reason", reason)
	if b.onChange != nil {
		b.onChange(b.name, old, n, reason)
	}
}

func (b *base) start(ctx context.Context, tick func(time.Time)) error {
	if b.stop != nil {
		return errors.New("autoscale: already started")
	}
	ctx, b.stop = context.WithCancel(context.WithoutCancel(ctx))
	b.apply(b.pool.Size(), "start within bounds")
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		t := time.NewTicker(b.interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				if !b.isPaused() {
					tick(now)
				}
			}
		}
	}()
	return nil
}

// Stop stops the controller and waits for it.
func (b *base) Stop() {
	if b.stop != nil {
		b.stop()
	}
	b.wg.Wait()
}

// usage decides when a pool has been quiet long enough to shrink, and to what: twice the most it
// used in any tick of the last Quiet. Growth needs every slot busy and work waiting while a quiet
// tick has at most half busy and nothing waiting, so a pool shrunk to twice its use does not grow
// back under the same load: the two do not flap.
type usage struct {
	quiet   time.Duration
	since   time.Time // the last busy tick, or the first tick
	samples []usageSample
}

type usageSample struct {
	at   time.Time
	peak int
}

// tick records one tick: whether the pool was busy and the most slots it used. It returns the size
// to shrink to once the pool has been quiet for Quiet, else 0.
func (u *usage) tick(now time.Time, busy bool, peak int) int {
	if u.since.IsZero() || busy {
		u.since = now
	}
	u.samples = append(u.samples, usageSample{now, peak})
	drop := 0
	for drop < len(u.samples) && !u.samples[drop].at.After(now.Add(-u.quiet)) {
		drop++
	}
	u.samples = u.samples[drop:]
	if now.Sub(u.since) < u.quiet {
		return 0
	}
	most := 0
	for _, s := range u.samples {
		most = max(most, s.peak)
	}
	return max(1, 2*most)
}
