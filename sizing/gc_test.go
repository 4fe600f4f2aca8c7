package sizing

import (
	"context"
	"runtime/debug"
	"sync"
	"testing"
	"time"
)

func TestFloorPercent(t *testing.T) {
	for _, c := range []struct {
		live, floor int64
		max, want   int
	}{
		{2 << 20, 32 << 20, 1000, 1000},  // 2 MB live: 1500 wanted, capped
		{4 << 20, 32 << 20, 1000, 700},   // goal 4 MB x 8 = 32 MB
		{5 << 20, 32 << 20, 1000, 500},   // 540 rounds down to 500
		{16 << 20, 32 << 20, 1000, 100},  // half the floor: Go's default
		{100 << 20, 32 << 20, 1000, 100}, // above the floor: never below 100
		{0, 32 << 20, 800, 800},          // unknown live heap
		{4 << 20, 0, 1000, 100},          // no floor
	} {
		if got := FloorPercent(c.live, c.floor, c.max); got != c.want {
			t.Errorf("FloorPercent(%d, %d, %d) = %d, want %d", c.live, c.floor, c.max, got, c.want)
		}
	}
}

// TestHeapFloorRun: on this test's small heap the floor raises GOGC above 100, says so, and puts
// 100 back when stopped; a memory limit caps the floor at a quarter of it.
func TestHeapFloorRun(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	h := NewHeapFloor(HeapFloorOptions{Floor: 1 << 30, Interval: time.Millisecond, Getenv: func(string) string { return "" }})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { h.Run(ctx) })
	deadline := time.Now().Add(5 * time.Second)
	for {
		if p, src := h.GOGC(); p > 100 && src == "heap_floor" {
			break
		}
		if time.Now().After(deadline) {
			p, src := h.GOGC()
			t.Fatalf("GOGC = %d (%s) on a small heap with a 1 GiB floor; want above 100", p, src)
		}
		time.Sleep(time.Millisecond)
	}
	if p, _ := h.GOGC(); p != 1000 {
		t.Errorf("GOGC = %d; want the cap 1000 for a 1 GiB floor", p)
	}
	cancel()
	wg.Wait()
	if p := debug.SetGCPercent(100); p != 100 {
		t.Errorf("GOGC after Run = %d, want 100 put back", p)
	}

	old := debug.SetMemoryLimit(64 << 20)
	defer debug.SetMemoryLimit(old)
	h = NewHeapFloor(HeapFloorOptions{Floor: 1 << 30, Getenv: func(string) string { return "" }})
	if f := h.floor(); f != 16<<20 {
		t.Errorf("floor under a 64 MiB limit = %d, want 16 MiB", f)
	}
}

// TestHeapFloorLeavesGOGCFromEnv: with GOGC set, the floor changes nothing and says why.
func TestHeapFloorLeavesGOGCFromEnv(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(250))
	h := NewHeapFloor(HeapFloorOptions{Getenv: func(k string) string {
		if k == "GOGC" {
			return "250"
		}
		return ""
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	h.Run(ctx)
	if p, src := h.GOGC(); p != 250 || src != "env" {
		t.Errorf("GOGC() = %d, %s; want 250, env", p, src)
	}
	if p := debug.SetGCPercent(250); p != 250 {
		t.Errorf("GOGC became %d", p)
	}
	if p, src := NewHeapFloor(HeapFloorOptions{Floor: -1, Getenv: func(string) string { return "" }}).GOGC(); p != 100 || src != "default" {
		t.Errorf("no floor: GOGC() = %d, %s; want 100, default", p, src)
	}
}
