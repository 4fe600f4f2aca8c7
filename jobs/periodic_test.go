package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/jobs/storetest"
)

// periodicCounts is an Observer that counts periodic slots (jobs.PeriodicObserver).
type periodicCounts struct {
	mu             sync.Mutex
	fired, skipped map[string]int
}

func newPeriodicCounts() *periodicCounts {
	return &periodicCounts{fired: map[string]int{}, skipped: map[string]int{}}
}

func (c *periodicCounts) Enqueued(string, string, int)      {}
func (c *periodicCounts) Started(*jobs.Job, time.Duration)  {}
func (c *periodicCounts) Finished(*jobs.Job, time.Duration) {}
func (c *periodicCounts) PeriodicFired(name string)         { c.mu.Lock(); c.fired[name]++; c.mu.Unlock() }
func (c *periodicCounts) PeriodicSkipped(name string, n int) {
	c.mu.Lock()
	c.skipped[name] += n
	c.mu.Unlock()
}

func (c *periodicCounts) get(name string) (fired, skipped int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fired[name], c.skipped[name]
}

// periodicBundle is a runtime with one "@every 1s" schedule on a fake clock, which start builds
// (again, as a restarted process does) on the same store data.
type periodicBundle struct {
	t      *testing.T
	b      *testBundle
	clock  *tandemtest.Clock
	counts *periodicCounts
	rt     *jobs.Runtime
}

func newPeriodicBundle(t *testing.T, be storetest.Backend) *periodicBundle {
	// Half a second past a slot, so that each Advance(time.Second) makes exactly one more due.
	return &periodicBundle{t: t, b: &testBundle{open: be.New(t)}, clock: tandemtest.NewClock(utc("2026-01-01T00:00:00.5Z"))}
}

// start builds and starts a runtime with the schedule "tick" (catch-up c).
func (pb *periodicBundle) start(c jobs.CatchUp) {
	pb.t.Helper()
	pb.counts = newPeriodicCounts()
	pb.rt = build(pb.t, pb.b, 1, func(o *jobs.Options) { o.Now, o.Observer = pb.clock.Now, pb.counts })
	if err := pb.rt.RegisterFunc("noop", func(context.Context, *jobs.Job) (any, error) { return nil, nil }); err != nil {
		pb.t.Fatal(err)
	}
	if err := pb.rt.RegisterPeriodic(jobs.Periodic{Name: "tick", Schedule: "@every 1s", Kind: "noop", CatchUp: c}); err != nil {
		pb.t.Fatal(err)
	}
	if err := pb.rt.Start(context.Background()); err != nil {
		pb.t.Fatal(err)
	}
}

// stop stops the runtime and closes its store, as a process's exit does.
func (pb *periodicBundle) stop() {
	pb.t.Helper()
	if err := pb.rt.Stop(context.Background()); err != nil {
		pb.t.Fatal(err)
	}
	if err := pb.b.store.Close(); err != nil {
		pb.t.Fatal(err)
	}
}

// tick moves the clock a second on and wakes the scheduler.
func (pb *periodicBundle) tick() {
	pb.clock.Advance(time.Second)
	pb.rt.WakePeriodic()
}

// slots returns the seconds (past 2026-01-01T00:00:00Z) of the tick jobs, sorted.
func (pb *periodicBundle) slots() []int {
	pb.t.Helper()
	js, _, err := pb.b.store.List(context.Background(), jobs.Filter{Limit: 1000})
	if err != nil {
		pb.t.Fatal(err)
	}
	var out []int
	for _, j := range js {
		if j.Periodic != "tick" {
			pb.t.Fatalf("job %s has periodic %q", j.ID, j.Periodic)
		}
		if !j.RunAt.Equal(j.Slot) {
			pb.t.Errorf("job %s: run_at %v, want its slot %v", j.ID, j.RunAt, j.Slot)
		}
		out = append(out, int(j.Slot.Sub(utc("2026-01-01T00:00:00Z"))/time.Second))
	}
	slices.Sort(out)
	return out
}

// waitSlots waits until the tick jobs are want.
func (pb *periodicBundle) waitSlots(want ...int) {
	pb.t.Helper()
	tandemtest.WaitFor(pb.t, fmt.Sprintf("tick jobs of slots %v", want), func() bool { return slices.Equal(pb.slots(), want) })
}

// TestPeriodicCatchUp: a schedule fires each slot once as the clock reaches it; a new schedule
// catches nothing up; after a stop, a start with catch_up one fires the latest missed slot alone
// and counts the older ones skipped; with none it fires none and waits for the next slot; a
// restart within a slot fires nothing twice.
func TestPeriodicCatchUp(t *testing.T) { eachBackend(t, testPeriodicCatchUp) }

func testPeriodicCatchUp(t *testing.T, be storetest.Backend) {
	pb := newPeriodicBundle(t, be)
	pb.start(jobs.CatchUpOne)
	pb.tick() // 1.5
	pb.waitSlots(1)
	pb.tick() // 2.5
	pb.waitSlots(1, 2)
	pb.stop()

	pb.start(jobs.CatchUpOne) // restarted within the slot: nothing to fire
	pb.tick()                 // 3.5
	pb.waitSlots(1, 2, 3)
	pb.stop()

	pb.clock.Advance(3 * time.Second) // down over 4, 5, 6; now 6.5
	pb.start(jobs.CatchUpOne)
	pb.waitSlots(1, 2, 3, 6)
	// The counts come after the job's commit, which waitSlots saw.
	tandemtest.WaitFor(t, "catch-up one's counts", func() bool { f, s := pb.counts.get("tick"); return f >= 1 && s >= 2 })
	if fired, skipped := pb.counts.get("tick"); fired != 1 || skipped != 2 {
		t.Fatalf("catch-up one: fired %d skipped %d, want 1 and 2 (slots 4 and 5)", fired, skipped)
	}
	pb.stop()

	pb.clock.Advance(2 * time.Second) // down over 7, 8; now 8.5
	pb.start(jobs.CatchUpNone)
	pb.tick() // 9.5
	pb.waitSlots(1, 2, 3, 6, 9)
	// The counts come after the job's commit, which waitSlots saw.
	tandemtest.WaitFor(t, "catch-up none's counts", func() bool { f, s := pb.counts.get("tick"); return f >= 1 && s >= 2 })
	if fired, skipped := pb.counts.get("tick"); fired != 1 || skipped != 2 {
		t.Fatalf("catch-up none: fired %d skipped %d, want 1 (slot 9) and 2 (slots 7 and 8)", fired, skipped)
	}
	st, err := pb.rt.Periodic(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Name != "tick" || st[0].Queue != "default" || st[0].CatchUp != jobs.CatchUpNone ||
		!st[0].LastSlot.Equal(utc("2026-01-01T00:00:09Z")) || !st[0].Next.Equal(utc("2026-01-01T00:00:10Z")) ||
		st[0].LastJobID == "" || st[0].LastState == "" {
		t.Fatalf("Periodic() = %+v", st)
	}
}

// TestPeriodicNewScheduleWaits: a schedule that never fired fires nothing at start, however
// late in its period, and its first job is its first slot after the start.
func TestPeriodicNewScheduleWaits(t *testing.T) {
	pb := newPeriodicBundle(t, bbolt())
	pb.clock.Advance(400 * time.Millisecond) // 0.9: slot 0 is long past
	pb.start(jobs.CatchUpOne)
	pb.tick() // 1.9
	pb.waitSlots(1)
	tandemtest.WaitFor(t, "the fired count", func() bool { f, _ := pb.counts.get("tick"); return f >= 1 })
	if fired, skipped := pb.counts.get("tick"); fired != 1 || skipped != 0 {
		t.Fatalf("fired %d skipped %d, want 1 and 0", fired, skipped)
	}
}

// TestRegisterPeriodicRefuses: a bad schedule, an unknown kind, a field no job may have, a
// duplicate name, a bad catch-up, and a registration after Start are errors.
func TestRegisterPeriodicRefuses(t *testing.T) {
	b := &testBundle{open: bbolt().New(t)}
	rt := build(t, b, 1, nil)
	_ = rt.RegisterFunc("noop", func(context.Context, *jobs.Job) (any, error) { return nil, nil })
	ok := jobs.Periodic{Name: "p", Schedule: "@hourly", Kind: "noop"}
	if err := rt.RegisterPeriodic(ok); err != nil {
		t.Fatal(err)
	}
	with := func(f func(p *jobs.Periodic)) jobs.Periodic { p := ok; p.Name = "q"; f(&p); return p }
	var verr *jobs.ValidationError
	for _, c := range []struct {
		name string
		p    jobs.Periodic
		is   func(error) bool
	}{
		{"bad schedule", with(func(p *jobs.Periodic) { p.Schedule = "61 * * * *" }), func(err error) bool { return errors.Is(err, jobs.ErrBadSchedule) }},
		{"unknown kind", with(func(p *jobs.Periodic) { p.Kind = "nope" }), func(err error) bool { return errors.Is(err, jobs.ErrUnknownKind) }},
		{"bad queue", with(func(p *jobs.Periodic) { p.Queue = "nope" }), func(err error) bool { return errors.As(err, &verr) && verr.Fields["queue"] != "" }},
		{"bad priority", with(func(p *jobs.Periodic) { p.Priority = 10 }), func(err error) bool { return errors.As(err, &verr) && verr.Fields["priority"] != "" }},
		{"bad payload", with(func(p *jobs.Periodic) { p.Payload = []byte(`{`) }), func(err error) bool { return errors.As(err, &verr) && verr.Fields["payload"] != "" }},
		{"bad catch-up", with(func(p *jobs.Periodic) { p.CatchUp = "all" }), func(err error) bool { return strings.Contains(err.Error(), "catch_up") }},
		{"duplicate", ok, func(err error) bool { return strings.Contains(err.Error(), "already registered") }},
		{"no name", with(func(p *jobs.Periodic) { p.Name = "" }), func(err error) bool { return strings.Contains(err.Error(), "name") }},
	} {
		if err := rt.RegisterPeriodic(c.p); err == nil || !c.is(err) {
			t.Errorf("%s: RegisterPeriodic = %v", c.name, err)
		}
	}
	if err := rt.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := rt.RegisterPeriodic(with(func(*jobs.Periodic) {})); err == nil || !strings.Contains(err.Error(), "started") {
		t.Errorf("RegisterPeriodic after Start = %v", err)
	}
}
