package sizing

import (
	"context"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// HeapFloorOptions configure KeepHeapFloor. The zero value keeps a 32 MiB floor.
type HeapFloorOptions struct {
	// Floor is the smallest heap goal the GC works to, in bytes. Default 32 MiB; below 0, none
	// (Go's GOGC=100 as it is).
	Floor int64
	// MaxPercent bounds the GOGC the floor may set. Default 1000.
	MaxPercent int
	// Interval is how often the live heap is read. Default 1s.
	Interval time.Duration
	// Getenv reads GOGC: when it is set, Go's value stands and nothing runs. Default os.Getenv.
	Getenv func(string) string
}

// DefaultHeapFloor is HeapFloorOptions.Floor's default.
const DefaultHeapFloor = 32 << 20

// HeapFloor raises GOGC while the live heap is small, so that the heap goal is at least a floor,
// and lowers it back to 100 as the heap grows past half the floor. tandem's live heap is a few MB
// (its pools and backlogs are bounded), and at GOGC=100 Go collects each time that doubles: 157
// collections in a 20,000-job run, a third of the process's CPU, for a heap goal of 5 MB. The
// floor trades a few tens of MB of memory for that CPU, as a ballast did before Go had
// GOMEMLIMIT; a memory limit (GOMEMLIMIT, set from the cgroup by Apply) still bounds the heap,
// and the floor never exceeds a quarter of it.
type HeapFloor struct {
	opts    HeapFloorOptions
	mu      sync.Mutex
	percent int // the GOGC set last; 0 before the first tick
	source  string
}

// NewHeapFloor returns a HeapFloor; Run applies it.
func NewHeapFloor(opts HeapFloorOptions) *HeapFloor {
	if opts.Floor == 0 {
		opts.Floor = DefaultHeapFloor
	}
	if opts.MaxPercent <= 0 {
		opts.MaxPercent = 1000
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	h := &HeapFloor{opts: opts, percent: 100, source: "heap_floor"}
	switch {
	case opts.Getenv("GOGC") != "":
		h.source, h.percent = "env", debug.SetGCPercent(-1)
		debug.SetGCPercent(h.percent)
	case opts.Floor < 0:
		h.source = "default"
	}
	return h
}

// GOGC reports the GOGC in force and where it came from: "env" (the GOGC variable), "heap_floor"
// (set by this floor from the live heap) or "default" (no floor: Go's 100).
func (h *HeapFloor) GOGC() (percent int, source string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.percent, h.source
}

// Run adjusts GOGC every Interval until ctx ends, then puts back GOGC=100. With GOGC set in the
// environment, or no floor, it only waits for ctx.
func (h *HeapFloor) Run(ctx context.Context) {
	if h.source != "heap_floor" {
		<-ctx.Done()
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	t := time.NewTicker(h.opts.Interval)
	defer t.Stop()
	defer debug.SetGCPercent(100)
	for {
		metrics.Read(sample)
		var live uint64
		if sample[0].Value.Kind() == metrics.KindUint64 {
			live = sample[0].Value.Uint64()
		}
		h.set(FloorPercent(int64(live), h.floor(), h.opts.MaxPercent))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// floor is the configured floor, at most a quarter of the memory limit in force.
func (h *HeapFloor) floor() int64 {
	f := h.opts.Floor
	if limit := debug.SetMemoryLimit(-1); limit > 0 && limit < math.MaxInt64 && f > limit/4 {
		f = limit / 4
	}
	return f
}

func (h *HeapFloor) set(p int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p != h.percent {
		debug.SetGCPercent(p)
		h.percent = p
	}
}

// FloorPercent is the GOGC that makes the heap goal, live x (1 + GOGC/100), reach floor: at least
// 100 (Go's default), at most maxPercent, rounded down to a multiple of 50 so that a heap that
// drifts by a few KB does not change it at every reading. An unknown live heap (0) gets
// maxPercent.
func FloorPercent(live, floor int64, maxPercent int) int {
	if floor <= 0 {
		return 100
	}
	if live <= 0 {
		return maxPercent
	}
	p := (floor - live) * 100 / live
	p = p / 50 * 50
	return int(min(max(p, 100), int64(maxPercent)))
}
