package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tandem-run/tandem/jobs"
)

// testDelete: Delete removes a finished job; an unfinished one is ErrNotFinished and stays; a
// missing one is ErrNotFound.
func testDelete(t *testing.T, b Backend) {
	s, _ := setup(t, b)
	ctx := context.Background()
	for _, st := range jobs.States {
		j := insert(t, s, newJob("q", 0, epoch))[0]
		update(t, s, j.ID, func(j *jobs.Job) { j.State = st })
		err := s.Delete(ctx, j.ID)
		switch {
		case st.Finished() && err != nil:
			t.Errorf("delete a %s job: %v", st, err)
		case st.Finished():
			if _, err := s.Get(ctx, j.ID); !errors.Is(err, jobs.ErrNotFound) {
				t.Errorf("a deleted %s job: Get = %v, want ErrNotFound", st, err)
			}
			if err := s.Delete(ctx, j.ID); !errors.Is(err, jobs.ErrNotFound) {
				t.Errorf("delete a deleted job: %v, want ErrNotFound", err)
			}
		case !errors.Is(err, jobs.ErrNotFinished):
			t.Errorf("delete a %s job: %v, want ErrNotFinished", st, err)
		default:
			if got := get(t, s, j.ID); got.State != st {
				t.Errorf("a refused delete changed the job: %s", got.State)
			}
		}
	}
	c := queue(t, s, "q").Counts
	for _, st := range jobs.States {
		if want := map[bool]int{true: 0, false: 1}[st.Finished()]; c[st] != want {
			t.Errorf("after the deletes: %d %s, want %d", c[st], st, want)
		}
	}
	if err := s.Delete(ctx, "01a23437-0e09-785d-9ecd-270806c402b2"); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("delete a missing job: %v", err)
	}
}

// testSweep: Sweep deletes every job that finished before `before` (strictly), whatever the
// batch, and no other job; it returns how many.
func testSweep(t *testing.T, b Backend) {
	s, bb := setup(t, b)
	ctx := context.Background()
	var fin []string
	for i, st := range []jobs.State{jobs.StateSucceeded, jobs.StateDead, jobs.StateCanceled, jobs.StateSucceeded, jobs.StateSucceeded, jobs.StateDead, jobs.StateSucceeded} {
		j := insert(t, s, newJob("q", 0, epoch))[0]
		finish(t, s, j.ID, st, epoch.Add(time.Duration(i)*time.Hour)) // finished at 0h, 1h, ... 6h
		fin = append(fin, j.ID)
	}
	live := insert(t, s, newJob("q", 0, epoch), newJob("q", 0, epoch))
	start(t, s, lease(t, s, "q", 1, time.Minute)[0].ID, bb.clock.Now())
	n, err := s.Sweep(ctx, epoch.Add(3*time.Hour), 2) // 0h, 1h, 2h; 3h is not before
	if err != nil || n != 3 {
		t.Fatalf("Sweep = %d, %v; want 3", n, err)
	}
	for i, id := range fin {
		_, err := s.Get(ctx, id)
		if gone := errors.Is(err, jobs.ErrNotFound); gone != (i < 3) {
			t.Errorf("job finished at %dh: Get = %v after a sweep before 3h", i, err)
		}
	}
	if n, err := s.Sweep(ctx, epoch.Add(3*time.Hour), 0); err != nil || n != 0 {
		t.Fatalf("a second Sweep = %d, %v; want 0", n, err)
	}
	if n, err := s.Sweep(ctx, epoch.Add(24*time.Hour), 0); err != nil || n != 4 { // the default batch
		t.Fatalf("Sweep of the rest = %d, %v; want 4", n, err)
	}
	for _, j := range live {
		get(t, s, j.ID)
	}
	c := queue(t, s, "q").Counts
	if c[jobs.StateSucceeded]+c[jobs.StateDead]+c[jobs.StateCanceled] != 0 || c[jobs.StateReady] != 1 || c[jobs.StateRunning] != 1 {
		t.Fatalf("counts after the sweeps: %v", c)
	}
}
