package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tandem-run/tandem/jobs"
)

// testLeaseOrder: LeaseQueued takes the best jobs first: priority (higher first), then RunAt, then
// id; N bounds it, and other queues are not touched.
func testLeaseOrder(t *testing.T, b Backend) {
	s, _ := setup(t, b)
	now := epoch
	lowOld := insert(t, s, newJob("q", 1, now.Add(-time.Minute)))[0]
	hi := insert(t, s, newJob("q", 9, now))[0]
	lowOldest := insert(t, s, newJob("q", 1, now.Add(-2*time.Minute)))[0]
	tie1 := insert(t, s, newJob("q", 5, now))[0] // same priority and RunAt: id order
	tie2 := insert(t, s, newJob("q", 5, now))[0]
	mid := insert(t, s, newJob("q", 5, now.Add(-time.Hour)))[0]
	other := insert(t, s, newJob("other", 9, now.Add(-time.Hour)))[0]
	want := []string{hi.ID, mid.ID, tie1.ID, tie2.ID, lowOldest.ID, lowOld.ID}
	var got []string
	for _, n := range []int{1, 2, 10} {
		got = append(got, ids(lease(t, s, "q", n, time.Minute))...)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("lease order %v\nwant        %v", got, want)
	}
	if get(t, s, other.ID).State != jobs.StateReady || s.Ready("other") != 1 {
		t.Fatal("a lease of q touched another queue")
	}
	if again := lease(t, s, "q", 10, time.Minute); len(again) != 0 {
		t.Fatalf("leased %d jobs twice", len(again))
	}
	if none := lease(t, s, "other", 0, time.Minute); len(none) != 0 {
		t.Fatalf("N 0 leased %d", len(none))
	}
}

// testLeaseMarks: a leased job is prefetched, with LeaseUntil now+For from the store's clock;
// Attempt and StartedAt stay as they were; the counts and Ready follow.
func testLeaseMarks(t *testing.T, b Backend) {
	s, bb := setup(t, b)
	js := insert(t, s, newJob("q", 0, epoch), newJob("q", 0, epoch), newJob("q", 0, epoch))
	earlier := epoch.Add(-time.Hour)
	update(t, s, js[0].ID, func(j *jobs.Job) { j.Attempt, j.StartedAt = 2, &earlier }) // a job retried twice
	bb.clock.Advance(time.Minute)
	got := lease(t, s, "q", 2, 30*time.Second)
	if len(got) != 2 {
		t.Fatalf("leased %d, want 2", len(got))
	}
	until := bb.clock.Now().Add(30 * time.Second)
	for _, j := range append(got, get(t, s, got[0].ID), get(t, s, got[1].ID)) {
		if j.State != jobs.StatePrefetched || j.LeaseUntil == nil || !j.LeaseUntil.Equal(until) {
			t.Errorf("leased job %s: %s until %v, want prefetched until %v", j.ID, j.State, j.LeaseUntil, until)
		}
	}
	if j := get(t, s, js[0].ID); j.Attempt != 2 || j.StartedAt == nil || !j.StartedAt.Equal(earlier) {
		t.Errorf("a lease changed the attempt: %d, started %v; want 2, %v", j.Attempt, j.StartedAt, earlier)
	}
	if j := get(t, s, js[1].ID); j.Attempt != 0 || j.StartedAt != nil {
		t.Errorf("a lease started the job: attempt %d, started %v", j.Attempt, j.StartedAt)
	}
	c := queue(t, s, "q").Counts
	if c[jobs.StatePrefetched] != 2 || c[jobs.StateReady] != 1 || c[jobs.StateRunning] != 0 || s.Ready("q") != 1 {
		t.Errorf("counts %v, Ready %d; want 2 prefetched, 1 ready", c, s.Ready("q"))
	}
}

// testLeaseReadyOnly: only ready jobs are leased: a scheduled or retrying job waits for Promote
// even when it is due, and finished and leased jobs are never leased.
func testLeaseReadyOnly(t *testing.T, b Backend) {
	s, bb := setup(t, b)
	js := insert(t, s, newJob("q", 0, epoch), newJob("q", 0, epoch), newJob("q", 0, epoch), newJob("q", 0, epoch))
	update(t, s, js[0].ID, func(j *jobs.Job) { j.State, j.RunAt = jobs.StateScheduled, epoch.Add(-time.Hour) })
	update(t, s, js[1].ID, func(j *jobs.Job) { j.State, j.RunAt = jobs.StateRetrying, epoch.Add(-time.Hour) })
	finish(t, s, js[2].ID, jobs.StateDead, bb.clock.Now())
	if got := lease(t, s, "q", 10, time.Minute); len(got) != 1 || got[0].ID != js[3].ID {
		t.Fatalf("leased %v, want only the ready job %s", ids(got), js[3].ID)
	}
	if got := lease(t, s, "q", 10, time.Minute); len(got) != 0 {
		t.Fatalf("leased %v again", ids(got))
	}
}

// testLeasePaused: a paused queue leases nothing, though its jobs stay ready; resumed, it leases.
func testLeasePaused(t *testing.T, b Backend) {
	s, _ := setup(t, b)
	ctx := context.Background()
	insert(t, s, newJob("q", 0, epoch), newJob("q", 0, epoch), newJob("other", 0, epoch))
	if err := s.SetPaused(ctx, "q", true); err != nil {
		t.Fatal(err)
	}
	if got := lease(t, s, "q", 10, time.Minute); len(got) != 0 {
		t.Fatalf("leased %d from a paused queue", len(got))
	}
	if s.Ready("q") != 2 {
		t.Fatalf("a paused queue's jobs: Ready %d, want 2", s.Ready("q"))
	}
	if got := lease(t, s, "other", 10, time.Minute); len(got) != 1 {
		t.Fatalf("pausing q stopped other: leased %d", len(got))
	}
	if err := s.SetPaused(ctx, "q", false); err != nil {
		t.Fatal(err)
	}
	if got := lease(t, s, "q", 10, time.Minute); len(got) != 2 {
		t.Fatalf("resumed queue leased %d, want 2", len(got))
	}
}

// testLeaseCap: a Shared store leases none beyond Lease.Cap of a queue's jobs leased (prefetched or
// running), counting every lease it holds. A store for one process may ignore Cap (the runtime
// counts its own leases), so this runs for Shared stores only.
func testLeaseCap(t *testing.T, b Backend) {
	s, bb := setup(t, b)
	if !bb.shared {
		t.Skip("Lease.Cap is a Shared store's promise; a store for one process may ignore it")
	}
	ctx := context.Background()
	for range 6 {
		insert(t, s, newJob("q", 0, epoch))
	}
	capped := func(n int) []*jobs.Job {
		t.Helper()
		js, wait, err := s.LeaseQueued(ctx, jobs.Lease{Queue: "q", N: n, For: time.Minute, Cap: 3})
		if err == nil {
			err = wait()
		}
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	first := capped(2)
	if len(first) != 2 {
		t.Fatalf("leased %d under a cap of 3, want 2", len(first))
	}
	start(t, s, first[0].ID, bb.clock.Now()) // running counts as leased too
	if got := capped(5); len(got) != 1 {
		t.Fatalf("leased %d with 2 of 3 leased, want 1", len(got))
	}
	if got := capped(5); len(got) != 0 {
		t.Fatalf("leased %d at the cap", len(got))
	}
	finish(t, s, first[0].ID, jobs.StateSucceeded, bb.clock.Now())
	if got := capped(5); len(got) != 1 {
		t.Fatalf("leased %d after one of 3 finished, want 1", len(got))
	}
}

// testLeaseConcurrent: leases from many goroutines at once never hand one job twice, and together
// hand every ready job.
func testLeaseConcurrent(t *testing.T, b Backend) {
	s, _ := setup(t, b)
	const total, leasers = 200, 8
	js := make([]*jobs.Job, total)
	for i := range js {
		js[i] = newJob("q", i%10, epoch)
	}
	insert(t, s, js...)
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for range leasers {
		wg.Go(func() {
			for range total { // bounded: each round leases at least one job or stops
				got, wait, err := s.LeaseQueued(context.Background(), jobs.Lease{Queue: "q", N: 7, For: time.Minute})
				if err == nil {
					err = wait()
				}
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 && s.Ready("q") == 0 {
					return
				}
				mu.Lock()
				for _, j := range got {
					seen[j.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for id, n := range seen {
		if n != 1 {
			t.Errorf("job %s leased %d times", id, n)
		}
	}
	if len(seen) != total {
		t.Fatalf("%d of %d jobs leased", len(seen), total)
	}
	if c := queue(t, s, "q").Counts; c[jobs.StatePrefetched] != total || c[jobs.StateReady] != 0 {
		t.Fatalf("counts %v", c)
	}
}

// testPromote: Promote moves scheduled and retrying jobs whose RunAt is not after now to ready,
// and returns how many and the earliest RunAt still ahead (zero when none).
func testPromote(t *testing.T, b Backend) {
	s, _ := setup(t, b)
	ctx := context.Background()
	for i := range 3 {
		j := newJob("q", 0, epoch.Add(time.Duration(i+1)*time.Minute))
		j.State = jobs.StateScheduled
		insert(t, s, j)
	}
	retry := insert(t, s, newJob("r", 0, epoch))[0]
	update(t, s, retry.ID, func(j *jobs.Job) { j.State, j.RunAt = jobs.StateRetrying, epoch.Add(time.Minute) })
	if moved, next, err := s.Promote(ctx, epoch); err != nil || moved != 0 || !next.Equal(epoch.Add(time.Minute)) {
		t.Fatalf("Promote before any is due = %d, %v, %v", moved, next, err)
	}
	// At exactly its RunAt a job is due.
	moved, next, err := s.Promote(ctx, epoch.Add(time.Minute))
	if err != nil || moved != 2 || !next.Equal(epoch.Add(2*time.Minute)) {
		t.Fatalf("Promote = %d, %v, %v; want 2 and the next at +2m", moved, next, err)
	}
	if get(t, s, retry.ID).State != jobs.StateReady || s.Ready("q") != 1 || s.Ready("r") != 1 {
		t.Fatalf("after Promote: retry %s, ready q %d r %d", get(t, s, retry.ID).State, s.Ready("q"), s.Ready("r"))
	}
	if c := queue(t, s, "q").Counts; c[jobs.StateReady] != 1 || c[jobs.StateScheduled] != 2 {
		t.Fatalf("counts %v", c)
	}
	if got := lease(t, s, "q", 5, time.Minute); len(got) != 1 {
		t.Fatalf("leased %d promoted jobs, want 1", len(got))
	}
	moved, next, _ = s.Promote(ctx, epoch.Add(time.Hour))
	if moved != 2 || !next.IsZero() {
		t.Fatalf("last Promote = %d, %v; want 2 and zero", moved, next)
	}
	if moved, next, _ := s.Promote(ctx, epoch.Add(time.Hour)); moved != 0 || !next.IsZero() {
		t.Fatalf("Promote of nothing = %d, %v", moved, next)
	}
}

// testPromoteMany: Promote moves every due job, however many commits it takes.
func testPromoteMany(t *testing.T, b Backend) {
	s, _ := setup(t, b)
	const n = 2500 // past bbolt's commit bound of 1000
	js := make([]*jobs.Job, n)
	for i := range js {
		js[i] = newJob("q", 0, epoch.Add(time.Duration(i%50)*time.Second))
		js[i].State = jobs.StateScheduled
	}
	insert(t, s, js...)
	late := newJob("q", 0, epoch.Add(time.Hour))
	late.State = jobs.StateScheduled
	insert(t, s, late)
	moved, next, err := s.Promote(context.Background(), epoch.Add(time.Minute))
	if err != nil || moved != n || !next.Equal(epoch.Add(time.Hour)) {
		t.Fatalf("Promote = %d, %v, %v; want %d and +1h", moved, next, err, n)
	}
	if s.Ready("q") != n {
		t.Fatalf("Ready %d, want %d", s.Ready("q"), n)
	}
}

// testSetPaused: SetPaused flips Paused and Queues' flag, for a queue with jobs or none yet.
func testSetPaused(t *testing.T, b Backend) {
	s, _ := setup(t, b)
	ctx := context.Background()
	insert(t, s, newJob("q", 0, epoch))
	for _, q := range []string{"q", "empty"} {
		if s.Paused(q) {
			t.Fatalf("%s paused before SetPaused", q)
		}
		if err := s.SetPaused(ctx, q, true); err != nil {
			t.Fatal(err)
		}
		if !s.Paused(q) || !queue(t, s, q).Paused {
			t.Fatalf("%s: Paused %v, Queues %+v after pausing", q, s.Paused(q), queue(t, s, q))
		}
		if err := s.SetPaused(ctx, q, true); err != nil { // again: no change, no error
			t.Fatal(err)
		}
	}
	if err := s.SetPaused(ctx, "q", false); err != nil {
		t.Fatal(err)
	}
	if s.Paused("q") || queue(t, s, "q").Paused || !s.Paused("empty") {
		t.Fatalf("after resuming q: q %v, empty %v", s.Paused("q"), s.Paused("empty"))
	}
}
