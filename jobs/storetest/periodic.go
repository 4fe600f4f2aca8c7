package storetest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-run/tandem/jobs"
)

// periodicJob is the job a schedule's fire of slot inserts.
func periodicJob(name string, slot time.Time) *jobs.Job {
	j := newJob("q", 0, slot)
	j.Periodic, j.Slot = name, slot
	return j
}

// fire calls FirePeriodic and fails the test on an error.
func fire(t *testing.T, s Store, name string, slot time.Time) (*jobs.Job, bool, time.Time) {
	t.Helper()
	j := periodicJob(name, slot)
	created, prev, err := s.FirePeriodic(context.Background(), name, slot, j)
	if err != nil {
		t.Fatalf("FirePeriodic %s %v: %v", name, slot, err)
	}
	return j, created, prev
}

// marks reads PeriodicMarks and fails the test on an error.
func marks(t *testing.T, s Store) map[string]jobs.PeriodicMark {
	t.Helper()
	m, err := s.PeriodicMarks(context.Background())
	if err != nil {
		t.Fatalf("PeriodicMarks: %v", err)
	}
	return m
}

// testPeriodicOncePerSlot: a slot after the mark inserts its job and moves the mark, which
// survives a reopen; the same slot again, or an older one, writes nothing; schedules are apart.
func testPeriodicOncePerSlot(t *testing.T, b Backend) {
	s, bb := setup(t, b)
	if m := marks(t, s); len(m) != 0 {
		t.Fatalf("a new store has marks %v", m)
	}
	s1, s2, s3 := epoch.Add(time.Minute), epoch.Add(2*time.Minute), epoch.Add(3*time.Minute)
	j1, created, prev := fire(t, s, "nightly", s1)
	if !created || !prev.IsZero() {
		t.Fatalf("first fire: created %v prev %v, want true and zero", created, prev)
	}
	if got := get(t, s, j1.ID); got.Periodic != "nightly" || !got.Slot.Equal(s1) || got.State != jobs.StateReady || !got.CreatedAt.Equal(bb.clock.Now()) {
		t.Fatalf("fired job %+v: want periodic nightly, slot %v, ready, created now", got, s1)
	}
	for _, slot := range []time.Time{s1, epoch} {
		j, created, prev := fire(t, s, "nightly", slot)
		if created || !prev.Equal(s1) {
			t.Fatalf("fire of %v after the mark %v: created %v prev %v, want false and the mark", slot, s1, created, prev)
		}
		if _, err := s.Get(context.Background(), j.ID); err == nil {
			t.Fatalf("a refused fire of %v wrote its job %s", slot, j.ID)
		}
	}
	_, created, _ = fire(t, s, "hourly", s1) // another schedule has its own mark
	if !created {
		t.Fatal("a second schedule's first slot was refused")
	}
	j3, created, prev := fire(t, s, "nightly", s3)
	if !created || !prev.Equal(s1) {
		t.Fatalf("fire of %v: created %v prev %v, want true and %v", s3, created, prev, s1)
	}
	s = bb.reopen(t)
	m := marks(t, s)
	if len(m) != 2 || !m["nightly"].Slot.Equal(s3) || m["nightly"].JobID != j3.ID || !m["hourly"].Slot.Equal(s1) {
		t.Fatalf("marks after reopen %+v: want nightly at %v (job %s) and hourly at %v", m, s3, j3.ID, s1)
	}
	if _, created, _ := fire(t, s, "nightly", s2); created {
		t.Fatalf("a slot (%v) older than the mark (%v) fired after a reopen", s2, s3)
	}
	if js, _, err := s.List(context.Background(), jobs.Filter{Queue: "q"}); err != nil || len(js) != 3 {
		t.Fatalf("jobs after the fires: %d, %v; want 3 (two nightly, one hourly)", len(js), err)
	}
}

// testPeriodicConcurrent: many goroutines fire the same slots at once (and, on a shared store,
// from two stores, as two replicas do): each slot makes one job, and the mark ends at the last.
func testPeriodicConcurrent(t *testing.T, b Backend) {
	s, bb := setup(t, b)
	stores := []Store{s}
	if bb.shared {
		stores = append(stores, bb.open(t, bb.clock.Now))
	}
	const slots, firers = 5, 8
	var made [slots]atomic.Int32
	var wg sync.WaitGroup
	for g := range firers {
		st := stores[g%len(stores)]
		wg.Go(func() {
			for k := range slots {
				slot := epoch.Add(time.Duration(k+1) * time.Second)
				created, _, err := st.FirePeriodic(context.Background(), "every", slot, periodicJob("every", slot))
				if err != nil {
					t.Error(err)
					return
				}
				if created {
					made[k].Add(1)
				}
			}
		})
	}
	wg.Wait()
	for k := range slots {
		if n := made[k].Load(); n != 1 {
			t.Errorf("slot %d: %d fires created a job, want exactly 1", k+1, n)
		}
	}
	js, _, err := s.List(context.Background(), jobs.Filter{Queue: "q", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[time.Time]int{}
	for _, j := range js {
		seen[j.Slot.UTC()]++
	}
	if len(js) != slots || len(seen) != slots {
		t.Fatalf("%d jobs over %d slots, want %d and %d", len(js), len(seen), slots, slots)
	}
	if m := marks(t, s)["every"]; !m.Slot.Equal(epoch.Add(slots * time.Second)) {
		t.Fatalf("mark %v, want the last slot", m.Slot)
	}
}
