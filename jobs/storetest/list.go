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

// listAll pages through List with f until the cursor is "", at most pages pages.
func listAll(t *testing.T, s Store, f jobs.Filter, pages int) []string {
	t.Helper()
	var out []string
	for range pages {
		js, next, err := s.List(context.Background(), f)
		if err != nil {
			t.Fatalf("List(%+v): %v", f, err)
		}
		if len(js) > max(f.Limit, 0) && f.Limit > 0 {
			t.Fatalf("List(%+v) returned %d jobs, over its limit", f, len(js))
		}
		out = append(out, ids(js)...)
		if next == "" {
			return out
		}
		f.Cursor = next
	}
	t.Fatalf("List(%+v) did not end in %d pages", f, pages)
	return nil
}

// reversed returns the ids of js, newest (last inserted) first, that match keep.
func reversed(js []*jobs.Job, keep func(*jobs.Job) bool) []string {
	var out []string
	for i := len(js) - 1; i >= 0; i-- {
		if keep(js[i]) {
			out = append(out, js[i].ID)
		}
	}
	return out
}

// testListFilters: List returns the jobs that match every field of the filter, newest first.
func testListFilters(t *testing.T, b Backend) {
	s, bb := setup(t, b)
	var js []*jobs.Job
	for i := range 24 {
		j := newJob([]string{"a", "b"}[i%2], 0, epoch)
		j.Kind = []string{"x", "y", "z"}[i%3]
		bb.clock.Advance(time.Millisecond)
		js = append(js, insert(t, s, j)[0])
	}
	for i, j := range js {
		if i%4 == 0 {
			finish(t, s, j.ID, jobs.StateSucceeded, bb.clock.Now())
			js[i].State = jobs.StateSucceeded
		}
	}
	for _, f := range []jobs.Filter{
		{}, {Queue: "a"}, {Kind: "y"}, {State: jobs.StateSucceeded}, {State: jobs.StateReady, Queue: "a", Kind: "x"},
		{Queue: "nope"}, {State: jobs.StateDead},
	} {
		want := reversed(js, func(j *jobs.Job) bool {
			return (f.Queue == "" || j.Queue == f.Queue) && (f.Kind == "" || j.Kind == f.Kind) && (f.State == "" || j.State == f.State)
		})
		if got := listAll(t, s, f, 10); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("List(%+v) = %v\nwant %v", f, got, want)
		}
	}
}

// testListCursors: paging with the cursors List returns visits every match once, newest first,
// whatever the page size.
func testListCursors(t *testing.T, b Backend) {
	s, _ := setup(t, b)
	var js []*jobs.Job
	for i := range 25 {
		js = append(js, insert(t, s, newJob([]string{"a", "b"}[i%2], 0, epoch))[0])
	}
	inA := func(j *jobs.Job) bool { return j.Queue == "a" }
	for _, limit := range []int{1, 5, 13, 1000} {
		if got, want := listAll(t, s, jobs.Filter{Queue: "a", Limit: limit}, 20), reversed(js, inA); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("pages of %d = %v\nwant %v", limit, got, want)
		}
	}
	// A cursor is reusable: the same page comes back.
	_, next, err := s.List(context.Background(), jobs.Filter{Limit: 10})
	if err != nil || next == "" {
		t.Fatalf("first page: cursor %q, %v", next, err)
	}
	p1, _, _ := s.List(context.Background(), jobs.Filter{Limit: 10, Cursor: next})
	p2, _, _ := s.List(context.Background(), jobs.Filter{Limit: 10, Cursor: next})
	if fmt.Sprint(ids(p1)) != fmt.Sprint(ids(p2)) || len(p1) == 0 {
		t.Fatalf("one cursor, two pages: %v and %v", ids(p1), ids(p2))
	}
}

// testListCursorInserts: jobs inserted or deleted between pages neither repeat nor hide the older
// jobs a listing has not reached yet.
func testListCursorInserts(t *testing.T, b Backend) {
	s, bb := setup(t, b)
	ctx := context.Background()
	var js []*jobs.Job
	for range 12 {
		js = append(js, insert(t, s, newJob("q", 0, epoch))[0])
	}
	page, next, err := s.List(ctx, jobs.Filter{Limit: 4})
	if err != nil || len(page) == 0 || next == "" {
		t.Fatalf("first page: %d jobs, cursor %q, %v", len(page), next, err)
	}
	seen := ids(page)
	insert(t, s, newJob("q", 0, epoch), newJob("q", 0, epoch))
	// Delete the job the cursor stands on, if the page ended on one: paging goes on below it.
	last := page[len(page)-1]
	finish(t, s, last.ID, jobs.StateCanceled, bb.clock.Now())
	if err := s.Delete(ctx, last.ID); err != nil {
		t.Fatal(err)
	}
	seen = append(seen, listAll(t, s, jobs.Filter{Limit: 4, Cursor: next}, 10)...)
	if want := reversed(js, func(*jobs.Job) bool { return true }); fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("paged %v\nwant  %v", seen, want)
	}
}

// testListLimits: Limit defaults to 50 and is at most 1000.
func testListLimits(t *testing.T, b Backend) {
	s, _ := setup(t, b)
	js := make([]*jobs.Job, 1005)
	for i := range js {
		js[i] = newJob("q", 0, epoch)
	}
	insert(t, s, js...)
	for _, c := range []struct{ limit, want int }{{0, 50}, {-1, 50}, {7, 7}, {1000, 1000}, {5000, 1000}} {
		got, next, err := s.List(context.Background(), jobs.Filter{Limit: c.limit})
		// Fewer with a cursor is allowed (a bounded scan), more never is.
		if err != nil || len(got) > c.want || (len(got) < c.want && next == "") {
			t.Errorf("List(Limit %d) = %d jobs, cursor %q, %v; want %d", c.limit, len(got), next, err, c.want)
		}
	}
}

// testListBadCursor: a cursor List did not return is ErrBadCursor.
func testListBadCursor(t *testing.T, b Backend) {
	s, _ := setup(t, b)
	insert(t, s, newJob("q", 0, epoch), newJob("q", 0, epoch))
	for _, c := range []string{"zz", "not a cursor", "!", "0"} {
		if _, _, err := s.List(context.Background(), jobs.Filter{Cursor: c}); !errors.Is(err, jobs.ErrBadCursor) {
			t.Errorf("List(cursor %q) = %v, want ErrBadCursor", c, err)
		}
	}
}

// testQueuesCounts: Queues lists every queue that has or had jobs, or is paused, sorted by name,
// with a count for every State.
func testQueuesCounts(t *testing.T, b Backend) {
	s, bb := setup(t, b)
	ctx := context.Background()
	if qs, err := s.Queues(ctx); err != nil || len(qs) != 0 {
		t.Fatalf("Queues of an empty store = %+v, %v", qs, err)
	}
	js := insert(t, s, newJob("zeta", 0, epoch), newJob("alpha", 0, epoch), newJob("alpha", 0, epoch), newJob("mid", 0, epoch))
	finish(t, s, js[0].ID, jobs.StateSucceeded, bb.clock.Now())
	if err := s.Delete(ctx, js[0].ID); err != nil { // zeta had a job
		t.Fatal(err)
	}
	start(t, s, lease(t, s, "alpha", 1, time.Minute)[0].ID, bb.clock.Now())
	if err := s.SetPaused(ctx, "paused-empty", true); err != nil {
		t.Fatal(err)
	}
	qs, err := s.Queues(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, q := range qs {
		names = append(names, q.Name)
		if len(q.Counts) != len(jobs.States) {
			t.Errorf("queue %s has counts for %d states, want all %d: %v", q.Name, len(q.Counts), len(jobs.States), q.Counts)
		}
	}
	if want := []string{"alpha", "mid", "paused-empty", "zeta"}; !slices.Equal(names, want) {
		t.Fatalf("Queues = %v, want %v", names, want)
	}
	want := map[string]map[jobs.State]int{
		"alpha": {jobs.StateReady: 1, jobs.StateRunning: 1},
		"mid":   {jobs.StateReady: 1},
	}
	for _, q := range qs {
		for _, st := range jobs.States {
			if q.Counts[st] != want[q.Name][st] {
				t.Errorf("queue %s: %d %s, want %d", q.Name, q.Counts[st], st, want[q.Name][st])
			}
		}
		if q.Paused != (q.Name == "paused-empty") {
			t.Errorf("queue %s: paused %v", q.Name, q.Paused)
		}
	}
}

// testQueuesOldestReady: OldestReady is the RunAt of the longest-waiting ready job of any
// priority; zero when the queue has none ready.
func testQueuesOldestReady(t *testing.T, b Backend) {
	s, _ := setup(t, b)
	insert(t, s, newJob("q", 9, epoch.Add(-time.Minute)), newJob("q", 0, epoch.Add(-time.Hour)), newJob("q", 5, epoch))
	sched := newJob("q", 0, epoch.Add(-2*time.Hour)) // not ready: does not count
	sched.State = jobs.StateScheduled
	insert(t, s, sched)
	if got := queue(t, s, "q").OldestReady; !got.Equal(epoch.Add(-time.Hour)) {
		t.Fatalf("OldestReady %v, want %v (the low-priority job's)", got, epoch.Add(-time.Hour))
	}
	lease(t, s, "q", 3, time.Minute)
	if got := queue(t, s, "q").OldestReady; !got.IsZero() {
		t.Fatalf("OldestReady with none ready = %v, want zero", got)
	}
}
