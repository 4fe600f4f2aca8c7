package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tandem-run/tandem/jobs"
)

// testListCreated: CreatedAfter and CreatedBefore bound CreatedAt to [after, before), with the
// other fields and across pages.
func testListCreated(t *testing.T, b Backend) {
	s, bb := setup(t, b)
	var js []*jobs.Job
	for i := range 10 { // created at epoch+1s, +2s, ... +10s
		bb.clock.Advance(time.Second)
		j := newJob([]string{"a", "b"}[i%2], 0, epoch)
		js = append(js, insert(t, s, j)[0])
	}
	at := func(sec int) time.Time { return epoch.Add(time.Duration(sec) * time.Second) }
	for _, f := range []jobs.Filter{
		{CreatedAfter: at(4)},
		{CreatedBefore: at(4)},
		{CreatedAfter: at(3), CreatedBefore: at(7)},
		{CreatedAfter: at(3), CreatedBefore: at(7), Queue: "a"},
		{CreatedAfter: at(3), CreatedBefore: at(7), Limit: 1},
		{CreatedAfter: at(7), CreatedBefore: at(3)},
		{CreatedAfter: at(11)},
		{CreatedBefore: at(1)},
	} {
		want := reversed(js, f.Matches)
		if got := listAll(t, s, f, 20); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("List(after %s, before %s, queue %q) = %v\nwant %v", f.CreatedAfter.Format(time.TimeOnly),
				f.CreatedBefore.Format(time.TimeOnly), f.Queue, got, want)
		}
	}
	// The bounds are inclusive below and exclusive above, to the backend's precision.
	if got := listAll(t, s, jobs.Filter{CreatedAfter: at(4), CreatedBefore: at(5)}, 2); len(got) != 1 || got[0] != js[3].ID {
		t.Errorf("List([4s, 5s)) = %v, want only %s (created at 4s)", got, js[3].ID)
	}
}

// testDeleteMany: DeleteMany removes the named jobs in the named states, in one call, and leaves
// the others (another state, missing, not an id); counts follow; leased states are refused.
func testDeleteMany(t *testing.T, b Backend) {
	s, bb := setup(t, b)
	ctx := context.Background()
	byState := map[jobs.State]string{}
	var all []string
	for _, st := range jobs.States {
		j := insert(t, s, newJob("q", 0, epoch))[0]
		update(t, s, j.ID, func(j *jobs.Job) {
			j.State = st
			if st.Leased() {
				until := bb.clock.Now().Add(time.Minute)
				j.LeaseUntil = &until
			}
		})
		byState[st] = j.ID
		all = append(all, j.ID)
	}
	uniq := newJob("q", 0, epoch)
	uniq.UniqueKey = "k"
	uj := insert(t, s, uniq)[0]
	all = append(all, uj.ID, "01a23437-0e09-785d-9ecd-270806c402b2", "not-an-id")

	if _, err := s.DeleteMany(ctx, all, []jobs.State{jobs.StateReady, jobs.StateRunning}); err == nil {
		t.Fatal("DeleteMany of running jobs: no error")
	}
	if got := get(t, s, byState[jobs.StateReady]); got.State != jobs.StateReady {
		t.Fatalf("a refused DeleteMany changed a job: %s", got.State)
	}
	waiting := []jobs.State{jobs.StateScheduled, jobs.StateReady, jobs.StateRetrying}
	n, err := s.DeleteMany(ctx, all, waiting)
	if err != nil || n != 4 { // scheduled, ready, retrying, and the unique job (ready)
		t.Fatalf("DeleteMany(waiting) = %d, %v; want 4", n, err)
	}
	for st, id := range byState {
		_, err := s.Get(ctx, id)
		if gone := errors.Is(err, jobs.ErrNotFound); gone != slices.Contains(waiting, st) {
			t.Errorf("a %s job after DeleteMany(waiting): Get = %v", st, err)
		}
	}
	// The unique key is free again, as after any delete.
	again := newJob("q", 0, epoch)
	again.UniqueKey = "k"
	if _, created, err := s.Insert(ctx, []*jobs.Job{again}, nil); err != nil || !created[0] {
		t.Fatalf("insert with the deleted job's unique key: created %v, %v", created, err)
	}
	c := queue(t, s, "q").Counts
	for _, st := range jobs.States {
		want := 1
		if slices.Contains(waiting, st) {
			want = 0
		}
		if st == jobs.StateReady {
			want = 1 // the new unique job
		}
		if c[st] != want {
			t.Errorf("after DeleteMany: %d %s, want %d", c[st], st, want)
		}
	}
	finished := []jobs.State{jobs.StateSucceeded, jobs.StateDead, jobs.StateCanceled}
	if n, err := s.DeleteMany(ctx, all, finished); err != nil || n != 3 {
		t.Fatalf("DeleteMany(finished) = %d, %v; want 3", n, err)
	}
	if n, err := s.DeleteMany(ctx, all, finished); err != nil || n != 0 {
		t.Fatalf("DeleteMany(finished) again = %d, %v; want 0", n, err)
	}
	if n, err := s.DeleteMany(ctx, nil, finished); err != nil || n != 0 {
		t.Fatalf("DeleteMany(no ids) = %d, %v", n, err)
	}
}
