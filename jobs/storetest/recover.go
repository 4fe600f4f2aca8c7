package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tandem-run/tandem/jobs"
)

// leftLeased writes three jobs of q, leases two and starts one of those, and closes and reopens
// the store, as a process that died with two jobs leased leaves them. It returns the prefetched
// job, the running one and the ready one.
func leftLeased(t *testing.T, bb *bundle) (Store, *jobs.Job, *jobs.Job, *jobs.Job) {
	t.Helper()
	s := bb.store
	js := insert(t, s, newJob("q", 0, epoch), newJob("q", 0, epoch), newJob("q", 0, epoch))
	leased := lease(t, s, "q", 2, time.Minute)
	running := start(t, s, leased[1].ID, bb.clock.Now())
	return bb.reopen(t), leased[0], running, js[2]
}

// testRecover: Recover hands each job left leased to fn, as a copy that fn moves out of the
// leased states; LeaseUntil is cleared after fn, and it returns how many. A Shared store hands
// none: its jobs stay leased until their lease runs out (Expired) and the leader rescues them.
func testRecover(t *testing.T, b Backend) {
	_, bb := setup(t, b)
	ctx := context.Background()
	s, prefetched, running, ready := leftLeased(t, bb)
	seen := map[string]jobs.State{}
	n, err := s.Recover(ctx, func(j *jobs.Job) {
		seen[j.ID] = j.State
		if j.LeaseUntil == nil {
			t.Errorf("fn got job %s without its lease", j.ID)
		}
		j.State = jobs.StateReady
		j.Priority = 3 // fn's changes are written
	})
	if err != nil {
		t.Fatal(err)
	}
	if bb.shared {
		if n != 0 || len(seen) != 0 {
			t.Fatalf("a Shared store's Recover handed %d jobs (%v), want none", n, seen)
		}
		if j := get(t, s, running.ID); j.State != jobs.StateRunning || j.LeaseUntil == nil {
			t.Fatalf("a Shared store's Recover changed a leased job: %+v", j)
		}
		ids, err := s.Expired(ctx, bb.clock.Now().Add(2*time.Minute), 10)
		if err != nil || len(ids) != 2 {
			t.Fatalf("Expired after the leases ran out = %v, %v; want both", ids, err)
		}
		return
	}
	if n != 2 || seen[prefetched.ID] != jobs.StatePrefetched || seen[running.ID] != jobs.StateRunning || len(seen) != 2 {
		t.Fatalf("Recover = %d, handed %v; want the prefetched and the running job", n, seen)
	}
	for _, id := range []string{prefetched.ID, running.ID} {
		if j := get(t, s, id); j.State != jobs.StateReady || j.LeaseUntil != nil || j.Priority != 3 {
			t.Errorf("recovered job %s: %s, lease %v, priority %d; want ready, none, 3", id, j.State, j.LeaseUntil, j.Priority)
		}
	}
	if j := get(t, s, running.ID); j.Attempt != 1 || j.StartedAt == nil {
		t.Errorf("recover lost the running job's attempt: %+v", j)
	}
	if j := get(t, s, ready.ID); j.Priority != 0 {
		t.Error("Recover handed a job that was not leased")
	}
	if s.Ready("q") != 3 || queue(t, s, "q").Counts[jobs.StatePrefetched] != 0 || queue(t, s, "q").Counts[jobs.StateRunning] != 0 {
		t.Fatalf("after Recover: Ready %d, counts %v", s.Ready("q"), queue(t, s, "q").Counts)
	}
	if ids, _ := s.Expired(ctx, bb.clock.Now().Add(time.Hour), 10); len(ids) != 0 {
		t.Fatalf("recovered jobs still expire: %v", ids)
	}
}

// testRecoverAllOrNothing: a fn that leaves one job leased fails the whole Recover, which writes
// none of them. (A Shared store hands none, so there is nothing to fail.)
func testRecoverAllOrNothing(t *testing.T, b Backend) {
	_, bb := setup(t, b)
	if bb.shared {
		t.Skip("a Shared store's Recover hands no job (see Recover/HandsLeasedJobs)")
	}
	s, prefetched, running, _ := leftLeased(t, bb)
	calls := 0
	if _, err := s.Recover(context.Background(), func(j *jobs.Job) {
		if calls++; calls == 1 {
			j.State = jobs.StateReady
		}
	}); err == nil {
		t.Fatal("Recover accepted a job left leased")
	}
	for id, want := range map[string]jobs.State{prefetched.ID: jobs.StatePrefetched, running.ID: jobs.StateRunning} {
		if j := get(t, s, id); j.State != want || j.LeaseUntil == nil {
			t.Errorf("a failed Recover wrote job %s: %s, lease %v", id, j.State, j.LeaseUntil)
		}
	}
}

// testRecoverNothing: with no job left leased, as after a clean stop, Recover calls nothing and
// writes nothing.
func testRecoverNothing(t *testing.T, b Backend) {
	s, bb := setup(t, b)
	js := insert(t, s, newJob("q", 0, epoch), newJob("q", 0, epoch))
	lease(t, s, "q", 1, time.Minute)
	finish(t, s, js[0].ID, jobs.StateSucceeded, bb.clock.Now())
	s = bb.reopen(t)
	before, counted := bb.commits()
	n, err := s.Recover(context.Background(), func(*jobs.Job) { t.Error("Recover handed a job with nothing leased") })
	if n != 0 || err != nil {
		t.Fatalf("Recover of nothing = %d, %v", n, err)
	}
	if after, _ := bb.commits(); counted && after != before {
		t.Fatalf("Recover of nothing made %d commits", after-before)
	}
}

// testReopen: a store opened again on the same data has every job, the pauses and the counts.
func testReopen(t *testing.T, b Backend) {
	s, bb := setup(t, b)
	ctx := context.Background()
	js := insert(t, s, newJob("q", 0, epoch), newJob("q", 5, epoch), newJob("r", 0, epoch))
	sched := newJob("q", 0, epoch.Add(time.Hour))
	sched.State = jobs.StateScheduled
	insert(t, s, sched)
	finish(t, s, js[2].ID, jobs.StateDead, bb.clock.Now())
	for _, q := range []string{"mail", "q"} {
		if err := s.SetPaused(ctx, q, true); err != nil {
			t.Fatal(err)
		}
	}
	wantQueues, err := s.Queues(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s = bb.reopen(t)
	if !s.Paused("mail") || !s.Paused("q") || s.Paused("r") {
		t.Fatalf("pauses after reopen: mail %v q %v r %v", s.Paused("mail"), s.Paused("q"), s.Paused("r"))
	}
	if s.Ready("q") != 2 || s.Ready("r") != 0 {
		t.Fatalf("Ready after reopen: q %d r %d", s.Ready("q"), s.Ready("r"))
	}
	gotQueues, err := s.Queues(ctx)
	if err != nil || !sameQueues(gotQueues, wantQueues) {
		t.Fatalf("Queues after reopen:\n%v, %v\nwant %v", gotQueues, err, wantQueues)
	}
	for _, j := range js {
		if got := get(t, s, j.ID); got.Priority != j.Priority || got.Queue != j.Queue {
			t.Fatalf("job %s after reopen: %+v", j.ID, got)
		}
	}
	if got := lease(t, s, "q", 5, time.Minute); len(got) != 0 {
		t.Fatal("leased from a queue paused before the reopen")
	}
}

// testExpired: Expired lists the leased jobs (prefetched or running) whose LeaseUntil is before
// now, soonest first, at most limit; a job whose lease ends at now has not expired yet.
func testExpired(t *testing.T, b Backend) {
	s, bb := setup(t, b)
	ctx := context.Background()
	insert(t, s, newJob("q", 0, epoch), newJob("q", 0, epoch), newJob("q", 0, epoch), newJob("q", 0, epoch))
	long := lease(t, s, "q", 1, 3*time.Minute)[0]
	short := lease(t, s, "q", 1, time.Minute)[0]
	start(t, s, short.ID, bb.clock.Now())
	mid := lease(t, s, "q", 1, 2*time.Minute)[0]
	for _, c := range []struct {
		at    time.Duration
		limit int
		want  []string
	}{
		{30 * time.Second, 10, nil},
		{time.Minute, 10, nil}, // LeaseUntil == now: not before now
		{time.Minute + time.Second, 10, []string{short.ID}},
		{time.Hour, 10, []string{short.ID, mid.ID, long.ID}},
		{time.Hour, 2, []string{short.ID, mid.ID}},
	} {
		got, err := s.Expired(ctx, epoch.Add(c.at), c.limit)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("Expired(+%v, %d) = %v, %v; want %v", c.at, c.limit, got, err, c.want)
		}
	}
}

// sameQueues reports whether two Queues results say the same; times compare as instants.
func sameQueues(a, b []jobs.QueueStats) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Paused != b[i].Paused || !a[i].OldestReady.Equal(b[i].OldestReady) || fmt.Sprint(a[i].Counts) != fmt.Sprint(b[i].Counts) {
			return false
		}
	}
	return true
}
