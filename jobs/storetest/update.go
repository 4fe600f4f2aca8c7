package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tandem-run/tandem/jobs"
)

// testUpdateMoves: an Update that changes a job's state, queue or priority moves it in the counts,
// in Ready and in the lease order, and sets UpdatedAt from the store's clock.
func testUpdateMoves(t *testing.T, b Backend) {
	s, bb := setup(t, b)
	js := insert(t, s, newJob("q", 0, epoch), newJob("q", 0, epoch))
	a, c := js[0], js[1]
	bb.clock.Advance(time.Minute)
	moved := update(t, s, a.ID, func(j *jobs.Job) { j.Queue, j.Priority = "r", 5 })
	if !moved.UpdatedAt.Equal(bb.clock.Now()) || !get(t, s, a.ID).UpdatedAt.Equal(bb.clock.Now()) {
		t.Errorf("UpdatedAt %v, want the store clock's %v", moved.UpdatedAt, bb.clock.Now())
	}
	if s.Ready("q") != 1 || s.Ready("r") != 1 || queue(t, s, "q").Counts[jobs.StateReady] != 1 || queue(t, s, "r").Counts[jobs.StateReady] != 1 {
		t.Fatalf("after a queue change: ready q %d, r %d", s.Ready("q"), s.Ready("r"))
	}
	update(t, s, c.ID, func(j *jobs.Job) { j.State, j.RunAt = jobs.StateScheduled, epoch.Add(time.Hour) })
	if s.Ready("q") != 0 || queue(t, s, "q").Counts[jobs.StateScheduled] != 1 {
		t.Fatalf("after ready -> scheduled: ready %d, counts %v", s.Ready("q"), queue(t, s, "q").Counts)
	}
	if got := lease(t, s, "q", 5, time.Minute); len(got) != 0 {
		t.Fatalf("leased %d scheduled jobs", len(got))
	}
	if got := lease(t, s, "r", 5, time.Minute); len(got) != 1 || got[0].ID != a.ID || got[0].Priority != 5 {
		t.Fatalf("lease of r = %v", ids(got))
	}
}

// testUpdateError: an error from fn is returned as it is and aborts that update alone; fn's
// changes before it failed are not written, and an update in the same commit goes through.
func testUpdateError(t *testing.T, b Backend) {
	s, _ := setup(t, b)
	ctx := context.Background()
	a := insert(t, s, newJob("q", 0, epoch))[0]
	bad := errors.New("refused")
	var wg sync.WaitGroup
	var errA, errB error
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, errA = s.Update(ctx, a.ID, func(j *jobs.Job) error { j.Kind = "half-done"; return bad })
	}()
	go func() {
		defer wg.Done()
		_, errB = s.Update(ctx, a.ID, func(j *jobs.Job) error { j.Priority = 5; return nil })
	}()
	wg.Wait()
	if !errors.Is(errA, bad) || errB != nil {
		t.Fatalf("errors: failing update %v, other %v", errA, errB)
	}
	if got := get(t, s, a.ID); got.Priority != 5 || got.Kind != "noop" {
		t.Fatalf("stored priority %d kind %q; want 5, noop", got.Priority, got.Kind)
	}
}

// testUpdateNotFound: Update, UpdateQueued and an Updater's Update of a missing job are ErrNotFound.
func testUpdateNotFound(t *testing.T, b Backend) {
	s, _ := setup(t, b)
	ctx := context.Background()
	const missing = "01a23437-0e09-785d-9ecd-270806c402b2"
	called := false
	if _, err := s.Update(ctx, missing, func(*jobs.Job) error { called = true; return nil }); !errors.Is(err, jobs.ErrNotFound) || called {
		t.Errorf("Update: %v (fn called %v), want ErrNotFound", err, called)
	}
	wait, err := s.UpdateQueued(ctx, missing, func(*jobs.Job) error { return nil })
	if err == nil {
		_, err = wait()
	}
	if !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("UpdateQueued: %v, want ErrNotFound", err)
	}
}

// testUpdateQueuedOrder: UpdateQueued returns before its commit, and requests land in the order
// they were sent: the later write wins, and each wait returns what it wrote.
func testUpdateQueuedOrder(t *testing.T, b Backend) {
	s, _ := setup(t, b)
	ctx := context.Background()
	j := insert(t, s, newJob("q", 0, epoch))[0]
	var waits []func() (*jobs.Job, error)
	for p := 1; p <= 9; p++ {
		w, err := s.UpdateQueued(ctx, j.ID, func(j *jobs.Job) error { j.Priority = p; j.Attempt++; return nil })
		if err != nil {
			t.Fatal(err)
		}
		waits = append(waits, w)
	}
	for i, w := range waits {
		got, err := w()
		if err != nil || got.Priority != i+1 || got.Attempt != i+1 {
			t.Fatalf("wait %d = %+v, %v; want priority and attempt %d", i, got, err, i+1)
		}
	}
	if got := get(t, s, j.ID); got.Priority != 9 || got.Attempt != 9 {
		t.Fatalf("stored priority %d attempt %d, want 9 and 9", got.Priority, got.Attempt)
	}
}

// applyThree inserts three jobs and, in one ApplyQueued request, changes the first and the third
// (priority 7), fails the second's fn (after it set priority 9) and names a missing job. It
// returns the jobs once a later Update has covered the commit.
func applyThree(t *testing.T, s Store) []*jobs.Job {
	t.Helper()
	ctx := context.Background()
	js := insert(t, s, newJob("q", 0, epoch), newJob("q", 0, epoch), newJob("q", 0, epoch))
	ran := make(chan struct{}, 1)
	err := s.ApplyQueued(ctx, func(u jobs.Updater) {
		for i, j := range js {
			u.Update(j.ID, func(j *jobs.Job) error {
				if i == 1 {
					j.Priority = 9
					return errors.New("not this one")
				}
				j.Priority = 7
				return nil
			})
		}
		u.Update("01a23437-0e09-785d-9ecd-270806c402b2", func(*jobs.Job) error { return nil })
		ran <- struct{}{}
	})
	if err != nil {
		t.Fatal(err)
	}
	// A later request's wait covers the ApplyQueued's commit.
	update(t, s, js[0].ID, func(j *jobs.Job) { j.Kind = "after" })
	select {
	case <-ran:
		return js
	default:
		t.Fatal("a later Update returned before the ApplyQueued ran")
		return nil
	}
}

// testApplyQueued: one ApplyQueued request changes several jobs; a change that fails (an error
// from fn, a missing job) leaves its job alone and the others commit; a later request's wait
// covers the commit.
func testApplyQueued(t *testing.T, b Backend) {
	s, _ := setup(t, b)
	js := applyThree(t, s)
	for i, want := range []int{7, 0, 7} {
		if j := get(t, s, js[i].ID); j.Priority != want {
			t.Errorf("job %d: priority %d, want %d", i, j.Priority, want)
		}
	}
	if j := get(t, s, js[0].ID); j.Kind != "after" {
		t.Errorf("the later update was lost: kind %q", j.Kind)
	}
}
