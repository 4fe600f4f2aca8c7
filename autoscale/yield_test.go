package autoscale

import (
	"context"
	"testing"
	"time"
)

// yieldWorld is a process the Yield controller runs against: a jobs pool with a backlog of jobs
// that each use jobCPU cores, HTTP requests arriving at rate a second that use httpCPU cores, on
// cores cores. Requests wait for a core (the CPU wait is high) while the jobs running leave less
// than a core free; otherwise the wait is low. The test's clock is the tick's argument.
type yieldWorld struct {
	t       *testing.T
	y       *Yield
	pool    *fakePool
	limit   int // what SetLimit was last given
	changes int
	now     time.Time

	cores   float64 // the cores the process really gets
	jobs    int     // jobs waiting or running
	jobCPU  float64 // cores per running job
	rate    float64 // requests a second
	httpCPU float64 // cores HTTP uses while it has traffic
	cpu     time.Duration
	wait    float64 // CPU wait reported at the next tick, seconds
	owed    float64 // requests due but not yet arrived (a fraction of one)
	lag     int     // jobs over the limit still running (prefetched before it came down)
}

func yieldSetup(t *testing.T, size int, opts YieldOptions) *yieldWorld {
	t.Helper()
	w := &yieldWorld{t: t, pool: &fakePool{size: size}, now: time.Now(), cores: 2, jobCPU: 1, httpCPU: 0.1}
	opts.Pool, opts.Logger = w.pool, quiet
	opts.Cores = max(opts.Cores, 2)
	opts.SetLimit = func(n int, _ string) { w.limit, w.changes = n, w.changes+1 }
	opts.CPUWait = func() float64 { return w.wait }
	opts.CPU = func() time.Duration { return w.cpu }
	y, err := NewYield(opts)
	if err != nil {
		t.Fatal(err)
	}
	w.y = y
	w.settle()
	y.Tick(w.now)
	return w
}

// settle sets the jobs running and the CPU wait the next tick reports from the limit in force.
func (w *yieldWorld) settle() {
	allowed := w.pool.size
	if w.limit > 0 {
		allowed = min(w.limit, w.pool.size)
	}
	w.pool.running = min(allowed+w.lag, w.pool.size, w.jobs)
	w.wait = 0.0002
	if w.rate > 0 && float64(w.pool.running)*w.jobCPU > w.cores-1 {
		w.wait = 0.004 // no core free: requests wait for a preemption
	}
}

// tick advances the world by one interval: requests arrive, CPU is used, then the controller ticks.
func (w *yieldWorld) tick() {
	d := w.y.opts.Interval
	w.now = w.now.Add(d)
	for w.owed += w.rate * d.Seconds(); w.owed >= 1; w.owed-- {
		w.y.Arrived()
	}
	used := float64(w.pool.running) * w.jobCPU
	if w.rate > 0 {
		used += w.httpCPU
	}
	w.cpu += time.Duration(min(used, w.cores) * float64(d))
	w.y.Tick(w.now)
	w.settle()
}

// run ticks n times and returns the limit after each tick.
func (w *yieldWorld) run(n int) []int {
	out := make([]int, n)
	for i := range out {
		w.tick()
		out[i] = w.limit
	}
	return out
}

// TestYieldHoldsCPUBoundJobsBackWhileHTTPHasTraffic: two CPU-bound jobs fill two cores while
// requests arrive at 200 a second: the limit comes down to one worker at the first tick and stays
// there (one more job would take the core HTTP has), then lifts once HTTP is idle for Idle. The
// same where other processes leave each job only 0.6 of a core: its CPU share does not look like
// room.
func TestYieldHoldsCPUBoundJobsBackWhileHTTPHasTraffic(t *testing.T) {
	for _, jobCPU := range []float64{1, 0.6} {
		w := yieldSetup(t, 2, YieldOptions{})
		w.jobs, w.rate, w.jobCPU = 1000, 200, jobCPU
		w.settle()
		limits := w.run(200)
		for i, l := range limits {
			if l != 1 {
				t.Fatalf("jobs of %.1f cores: tick %d: limit %d, want 1 throughout (limits %v)", jobCPU, i+1, l, limits)
			}
		}
		if st := w.y.State(); st.Yields != 1 || w.changes != 1 {
			t.Fatalf("state %+v after %d changes, want one yield", st, w.changes)
		}
		w.rate = 0
		idleTicks := int(w.y.opts.Idle / w.y.opts.Interval)
		limits = w.run(idleTicks + 1)
		if limits[idleTicks-2] != 1 || limits[idleTicks] != 0 {
			t.Fatalf("after HTTP went idle: limits %v, want 1 until %s of no traffic, then 0", limits, w.y.opts.Idle)
		}
		if st := w.y.State(); st.Limit != 0 || st.Reason == "" {
			t.Fatalf("state %+v, want no limit and a reason", st)
		}
	}
}

// TestYieldKeepsTheFloor: HTTP itself keeps the cores full, so the wait never falls: the limit
// comes down one worker a tick, to MinWorkers and no lower, however long it lasts.
func TestYieldKeepsTheFloor(t *testing.T) {
	for _, tc := range []struct{ size, min, want int }{{8, 0, 1}, {8, 3, 3}, {2, 5, 0}} {
		w := yieldSetup(t, tc.size, YieldOptions{MinWorkers: tc.min})
		w.jobs, w.rate, w.cores = 1000, 200, 0.5 // cores taken by other processes
		w.settle()
		limits := w.run(100)
		if got := limits[len(limits)-1]; got != tc.want {
			t.Errorf("size %d, MinWorkers %d: limit %d at the end, want %d (limits %v)", tc.size, tc.min, got, tc.want, limits)
		}
		for i := 1; i < len(limits); i++ {
			if prev := cmpLimit(limits[i-1], tc.size); limits[i] != 0 && prev-limits[i] > 1 {
				t.Fatalf("size %d: limit fell from %d to %d in one tick", tc.size, prev, limits[i])
			}
		}
	}
}

// cmpLimit is the workers a limit lets take jobs.
func cmpLimit(l, size int) int {
	if l == 0 {
		return size
	}
	return l
}

// TestYieldWaitsForTheLimitToBite: after the limit comes down, jobs prefetched before it still run;
// while more jobs run than the limit, it does not come down further, however high the wait.
func TestYieldWaitsForTheLimitToBite(t *testing.T) {
	w := yieldSetup(t, 4, YieldOptions{})
	w.jobs, w.rate, w.cores = 1000, 200, 1 // one core: any job fills it
	w.settle()
	w.tick()
	if w.limit != 3 {
		t.Fatalf("limit %d after the first tick, want 3", w.limit)
	}
	w.lag = 1 // one job over the limit still runs
	w.settle()
	for range 5 {
		if w.tick(); w.limit != 3 {
			t.Fatalf("limit %d with %d jobs still running, want it held at 3", w.limit, w.pool.running)
		}
	}
	w.lag = 0
	w.settle()
	if w.tick(); w.limit != 2 {
		t.Fatalf("limit %d once the limit was reached, want 2", w.limit)
	}
}

// TestYieldGivesIOBoundJobsBack: jobs that use little CPU were held back by a burst of waiting
// (HTTP's own); once the wait is low for Calm ticks they come back one worker at a time, since the
// CPU has room for another: the limit is gone after (size - floor) x Calm ticks.
func TestYieldGivesIOBoundJobsBack(t *testing.T) {
	w := yieldSetup(t, 4, YieldOptions{})
	w.jobs, w.rate, w.jobCPU = 1000, 200, 0.05
	w.settle()
	for range 3 { // three ticks of waiting: 4 -> 3 -> 2 -> 1
		w.wait = 0.004
		w.tick()
	}
	if w.limit != 1 {
		t.Fatalf("limit %d after three ticks of waiting, want 1", w.limit)
	}
	calm := w.y.opts.Calm
	limits := w.run(3 * calm)
	want := []int{2, 3, 0}
	for i, l := range want {
		if got := limits[(i+1)*calm-1]; got != l {
			t.Fatalf("after %d calm ticks: limit %d, want %d (limits %v)", (i+1)*calm, got, l, limits)
		}
		if i > 0 && limits[(i+1)*calm-2] != want[i-1] {
			t.Fatalf("limit changed before %d calm ticks (limits %v)", calm, limits)
		}
	}
}

// TestYieldTakesBackAFailedStep: on a machine whose other processes leave the process fewer cores
// than Cores says, the CPU figure lets a worker come back and the wait rises at once: the step is
// taken back the next tick, and each failure doubles the calm ticks before the next try.
func TestYieldTakesBackAFailedStep(t *testing.T) {
	w := yieldSetup(t, 2, YieldOptions{Cores: 8})
	w.jobs, w.rate = 1000, 200
	w.settle()
	limits := w.run(w.y.opts.Calm * (1 + 2 + 4 + 8))
	var ups []int // ticks at which a worker came back
	for i := 1; i < len(limits); i++ {
		if limits[i] == 0 {
			ups = append(ups, i)
			if i+1 < len(limits) && limits[i+1] != 1 {
				t.Fatalf("tick %d: limit %d after a failed step, want 1 again (limits %v)", i+1, limits[i+1], limits)
			}
		}
	}
	if len(ups) < 3 {
		t.Fatalf("steps up at %v, want at least 3 (limits %v)", ups, limits)
	}
	for k := 1; k < len(ups); k++ {
		if gap, want := ups[k]-ups[k-1], w.y.opts.Calm<<k+1; gap != want {
			t.Fatalf("steps up at ticks %v: gap %d after failure %d, want %d (Calm x 2^%d, and the tick taken back)", ups, gap, k, want, k)
		}
	}
}

// TestYieldIgnoresWhatIsNotTraffic: a health probe every few seconds is not traffic, and without
// a job running there is nothing to hold back: the wait alone never sets a limit.
func TestYieldIgnoresWhatIsNotTraffic(t *testing.T) {
	w := yieldSetup(t, 2, YieldOptions{})
	w.jobs, w.rate = 1000, 0.5
	for range 40 {
		w.tick()
		w.wait = 0.01
	}
	w.jobs, w.rate = 0, 200
	w.settle()
	for range 40 {
		w.tick()
		w.wait = 0.01
	}
	if w.changes != 0 {
		t.Fatalf("limit changed %d times (now %d), want never", w.changes, w.limit)
	}
}

// TestYieldStopLiftsTheLimit: Start runs the loop, Stop ends it (goleak checks) and leaves no job
// held back; a second Start is refused.
func TestYieldStopLiftsTheLimit(t *testing.T) {
	w := yieldSetup(t, 2, YieldOptions{Interval: time.Hour})
	w.jobs, w.rate = 1000, 200
	w.settle()
	w.tick()
	if w.limit != 1 {
		t.Fatalf("limit %d, want 1", w.limit)
	}
	if err := w.y.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := w.y.Start(context.Background()); err == nil {
		t.Fatal("second Start: no error")
	}
	w.y.Stop()
	if st := w.y.State(); w.limit != 0 || st.Limit != 0 {
		t.Fatalf("after Stop: limit %d, state %+v, want none", w.limit, st)
	}
}

func TestNewYieldRefusesBadOptions(t *testing.T) {
	p := &fakePool{size: 2}
	set := func(int, string) {}
	for _, o := range []YieldOptions{
		{SetLimit: set, Cores: 2},
		{Pool: p, Cores: 2},
		{Pool: p, SetLimit: set},
		{Pool: p, SetLimit: set, Cores: 2, MinWorkers: -1},
		{Pool: p, SetLimit: set, Cores: 2, Calm: -1},
	} {
		if _, err := NewYield(o); err == nil {
			t.Errorf("NewYield(%+v): no error", o)
		}
	}
}
