package jobs_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/jobs/storetest"
)

// bulkQueues are the queues of the bulk tests: "bulk" holds the jobs under test, "other" the
// jobs that must be left alone or keep flowing.
var bulkQueues = map[string]jobs.QueueOptions{"default": {}, "bulk": {}, "other": {}}

// setupBulk builds a runtime with a kind "ok" that succeeds and a kind "block" that runs until
// canceled, and the bulk queue paused.
func setupBulk(t *testing.T, be storetest.Backend) (*jobs.Runtime, *testBundle) {
	t.Helper()
	rt, b := setup(t, be, 16, func(o *jobs.Options) { o.Queues = bulkQueues; o.Prefetch = 64 })
	_ = rt.RegisterFunc("ok", func(context.Context, *jobs.Job) (any, error) { return nil, nil })
	_ = rt.RegisterFunc("block", func(ctx context.Context, _ *jobs.Job) (any, error) { <-ctx.Done(); return nil, ctx.Err() })
	if err := rt.Pause(context.Background(), "bulk"); err != nil {
		t.Fatal(err)
	}
	return rt, b
}

// makeJobs enqueues n jobs of kind ok to the paused bulk queue and moves them to st directly in
// the store (as a handler's end would), in batches; it returns their ids, oldest first.
func makeJobs(t *testing.T, rt *jobs.Runtime, b *testBundle, n int, st jobs.State) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	for len(ids) < n {
		ps := make([]jobs.EnqueueParams, min(n-len(ids), 1000))
		for i := range ps {
			ps[i] = jobs.EnqueueParams{Kind: "ok", Queue: "bulk", MaxAttempts: 1}
		}
		js, _, err := rt.EnqueueBatch(ctx, ps)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range js {
			ids = append(ids, j.ID)
		}
	}
	if st == jobs.StateReady {
		return ids
	}
	for chunk := range slices.Chunk(ids, 500) {
		var waits []func() (*jobs.Job, error)
		for _, id := range chunk {
			w, err := b.store.UpdateQueued(ctx, id, func(j *jobs.Job) error {
				now := time.Now()
				j.State, j.Attempt, j.Errors = st, 1, []jobs.AttemptError{{Attempt: 1, At: now, Error: "made " + string(st)}}
				if st.Finished() {
					j.FinishedAt = &now
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			waits = append(waits, w)
		}
		for _, w := range waits {
			if _, err := w(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return ids
}

// states returns the state of each job, ErrNotFound ones as "gone".
func states(t *testing.T, rt *jobs.Runtime, ids []string) map[string]jobs.State {
	t.Helper()
	out := map[string]jobs.State{}
	for _, id := range ids {
		j, err := rt.Get(context.Background(), id)
		switch {
		case errors.Is(err, jobs.ErrNotFound):
			out[id] = "gone"
		case err != nil:
			t.Fatal(err)
		default:
			out[id] = j.State
		}
	}
	return out
}

func countStates(m map[string]jobs.State) map[jobs.State]int {
	c := map[jobs.State]int{}
	for _, st := range m {
		c[st]++
	}
	return c
}

func bulk(t *testing.T, rt *jobs.Runtime, a jobs.BulkAction) jobs.BulkResult {
	t.Helper()
	res, err := rt.Bulk(context.Background(), a)
	if err != nil {
		t.Fatalf("Bulk(%+v): %v", a, err)
	}
	return res
}

func TestBulkRetry(t *testing.T) { eachBackend(t, testBulkRetry) }

// testBulkRetry: retry takes the dead jobs of the filter, batch by batch, puts them back to ready
// with their attempts reset, and they run; a job retried by hand between its batch's read and
// its write is skipped; one that stopped matching before its batch was read is not counted.
func testBulkRetry(t *testing.T, be storetest.Backend) {
	rt, b := setupBulk(t, be)
	dead := makeJobs(t, rt, b, 11, jobs.StateDead)
	done := makeJobs(t, rt, b, 2, jobs.StateSucceeded) // not dead: never touched
	var batches [][]string
	rt.SetBulkHook(func(ids []string) {
		batches = append(batches, ids)
		if len(batches) == 2 {
			// Between the read and the write of the second batch: one of its jobs is retried by
			// hand (skipped), and the oldest dead job, in no batch yet, too (not matched).
			for _, id := range []string{ids[0], dead[0]} {
				if _, err := rt.Retry(context.Background(), id); err != nil {
					t.Error(err)
				}
			}
		}
	})
	res := bulk(t, rt, jobs.BulkAction{Op: jobs.BulkRetry, Filter: jobs.Filter{Queue: "bulk"}, BatchSize: 4})
	if want := (jobs.BulkResult{Matched: 10, Changed: 9, Skipped: 1}); res != want {
		t.Fatalf("Bulk = %+v, want %+v", res, want)
	}
	var lens []int
	for _, ids := range batches {
		lens = append(lens, len(ids))
	}
	if !slices.Equal(lens, []int{4, 4, 2}) { // 11 dead, newest first: 4, 4, then 2 (the oldest was retried by hand)
		t.Fatalf("batches of %v ids, want [4 4 2]", lens)
	}
	for _, id := range dead {
		j, err := rt.Get(context.Background(), id)
		if err != nil || j.State != jobs.StateReady || j.Attempt != 0 || j.FinishedAt != nil || len(j.Errors) != 1 {
			t.Fatalf("retried job %s: %+v, %v; want ready, attempt 0, its error kept", id, j, err)
		}
	}
	if c := countStates(states(t, rt, done)); c[jobs.StateSucceeded] != 2 {
		t.Fatalf("succeeded jobs after a bulk retry: %v", c)
	}
	if err := rt.Resume(context.Background(), "bulk"); err != nil {
		t.Fatal(err)
	}
	for _, id := range dead {
		waitState(t, rt, id, jobs.StateSucceeded)
	}
}

func TestBulkResumes(t *testing.T) { eachBackend(t, testBulkResumes) }

// testBulkResumes: with MaxDuration passed after each batch, every call does one batch and
// returns a cursor; calls resumed from it take every job once, and a dry run changes nothing.
func testBulkResumes(t *testing.T, be storetest.Backend) {
	rt, b := setupBulk(t, be)
	ids := makeJobs(t, rt, b, 7, jobs.StateCanceled)
	a := jobs.BulkAction{Op: jobs.BulkDelete, Filter: jobs.Filter{Queue: "bulk", State: jobs.StateCanceled}, BatchSize: 3, MaxDuration: time.Nanosecond}
	dry := a
	dry.DryRun, dry.BatchSize, dry.MaxDuration = true, 0, 0
	if res := bulk(t, rt, dry); res != (jobs.BulkResult{Matched: 7}) {
		t.Fatalf("dry run = %+v, want 7 matched", res)
	}
	if c := countStates(states(t, rt, ids)); c[jobs.StateCanceled] != 7 {
		t.Fatalf("a dry run changed jobs: %v", c)
	}
	var total jobs.BulkResult
	calls := 0
	for {
		res := bulk(t, rt, a)
		calls++
		total.Matched, total.Changed, total.Skipped = total.Matched+res.Matched, total.Changed+res.Changed, total.Skipped+res.Skipped
		if res.Cursor == "" {
			break
		}
		if calls > 10 {
			t.Fatal("bulk did not end in 10 calls")
		}
		a.Filter.Cursor = res.Cursor
	}
	if want := (jobs.BulkResult{Matched: 7, Changed: 7}); total != want || calls != 3 {
		t.Fatalf("%d calls did %+v, want 3 calls, %+v", calls, total, want)
	}
	if c := countStates(states(t, rt, ids)); c["gone"] != 7 {
		t.Fatalf("after the bulk delete: %v", c)
	}
}

func TestBulkCancel(t *testing.T) { eachBackend(t, testBulkCancel) }

// testBulkCancel: cancel takes the waiting jobs of the filter in batches and stops a running one
// as Cancel does; finished jobs and other queues are left alone.
func testBulkCancel(t *testing.T, be storetest.Backend) {
	rt, b := setupBulk(t, be)
	waiting := makeJobs(t, rt, b, 5, jobs.StateReady)
	done := makeJobs(t, rt, b, 2, jobs.StateDead)
	other := enqueue(t, rt, jobs.EnqueueParams{Kind: "ok", Queue: "other", RunAt: time.Now().Add(time.Hour)})
	running := enqueue(t, rt, jobs.EnqueueParams{Kind: "block", Queue: "default"})
	waitState(t, rt, running.ID, jobs.StateRunning)

	res := bulk(t, rt, jobs.BulkAction{Op: jobs.BulkCancel, Filter: jobs.Filter{Queue: "bulk"}, BatchSize: 2})
	if want := (jobs.BulkResult{Matched: 5, Changed: 5}); res != want {
		t.Fatalf("Bulk(cancel bulk) = %+v, want %+v", res, want)
	}
	if c := countStates(states(t, rt, waiting)); c[jobs.StateCanceled] != 5 {
		t.Fatalf("waiting jobs after bulk cancel: %v", c)
	}
	if c := countStates(states(t, rt, append(done, other.ID))); c[jobs.StateDead] != 2 || c[jobs.StateScheduled] != 1 {
		t.Fatalf("jobs outside the filter after bulk cancel: %v", c)
	}
	res = bulk(t, rt, jobs.BulkAction{Op: jobs.BulkCancel, Filter: jobs.Filter{Kind: "block"}})
	if want := (jobs.BulkResult{Matched: 1, Changed: 1}); res != want {
		t.Fatalf("Bulk(cancel the running job) = %+v, want %+v", res, want)
	}
	waitState(t, rt, running.ID, jobs.StateCanceled)
}

func TestBulkPurgeAndDelete(t *testing.T) { eachBackend(t, testBulkPurgeAndDelete) }

// testBulkPurgeAndDelete: purge deletes the waiting jobs of its queue only; delete the finished
// jobs of the filter only, by creation time too.
func testBulkPurgeAndDelete(t *testing.T, be storetest.Backend) {
	rt, b := setupBulk(t, be)
	old := makeJobs(t, rt, b, 3, jobs.StateSucceeded)
	time.Sleep(5 * time.Millisecond) // a creation time strictly between the two groups
	mid := time.Now()
	time.Sleep(5 * time.Millisecond)
	young := makeJobs(t, rt, b, 2, jobs.StateSucceeded)
	waiting := makeJobs(t, rt, b, 4, jobs.StateReady)
	sched := enqueue(t, rt, jobs.EnqueueParams{Kind: "ok", Queue: "other", RunAt: time.Now().Add(time.Hour)})

	res := bulk(t, rt, jobs.BulkAction{Op: jobs.BulkPurge, Filter: jobs.Filter{Queue: "bulk"}, BatchSize: 3})
	if want := (jobs.BulkResult{Matched: 4, Changed: 4}); res != want {
		t.Fatalf("purge = %+v, want %+v", res, want)
	}
	if c := countStates(states(t, rt, waiting)); c["gone"] != 4 {
		t.Fatalf("waiting jobs after purge: %v", c)
	}
	if got := states(t, rt, []string{sched.ID})[sched.ID]; got != jobs.StateScheduled {
		t.Fatalf("a job of another queue after purge: %s", got)
	}
	res = bulk(t, rt, jobs.BulkAction{Op: jobs.BulkDelete, Filter: jobs.Filter{Queue: "bulk", CreatedBefore: mid}})
	if want := (jobs.BulkResult{Matched: 3, Changed: 3}); res != want {
		t.Fatalf("delete created before = %+v, want %+v", res, want)
	}
	got := countStates(states(t, rt, old))
	if got["gone"] != 3 {
		t.Fatalf("old jobs after delete: %v", got)
	}
	if got := countStates(states(t, rt, young)); got[jobs.StateSucceeded] != 2 {
		t.Fatalf("young jobs after deleting the old: %v", got)
	}
}

func TestBulkRefuses(t *testing.T) {
	rt, _ := setupBulk(t, bbolt())
	for _, c := range []struct {
		a     jobs.BulkAction
		field string
	}{
		{jobs.BulkAction{Op: "explode"}, "action"},
		{jobs.BulkAction{}, "action"},
		{jobs.BulkAction{Op: jobs.BulkRetry, Filter: jobs.Filter{State: jobs.StateReady}}, "filter.state"},
		{jobs.BulkAction{Op: jobs.BulkCancel, Filter: jobs.Filter{State: jobs.StateSucceeded}}, "filter.state"},
		{jobs.BulkAction{Op: jobs.BulkDelete, Filter: jobs.Filter{State: jobs.StateRunning}}, "filter.state"},
		{jobs.BulkAction{Op: jobs.BulkDelete, Filter: jobs.Filter{State: "nope"}}, "filter.state"},
		{jobs.BulkAction{Op: jobs.BulkPurge}, "filter.queue"},
		{jobs.BulkAction{Op: jobs.BulkPurge, Filter: jobs.Filter{Queue: "q", State: jobs.StateDead}}, "filter.state"},
		{jobs.BulkAction{Op: jobs.BulkDelete, Filter: jobs.Filter{CreatedAfter: time.Unix(10, 0), CreatedBefore: time.Unix(5, 0)}}, "filter.created_before"},
		{jobs.BulkAction{Op: jobs.BulkDelete, BatchSize: jobs.MaxBulkBatch + 1}, "batch_size"},
	} {
		_, err := rt.Bulk(context.Background(), c.a)
		var ve *jobs.ValidationError
		if !errors.As(err, &ve) || ve.Fields[c.field] == "" {
			t.Errorf("Bulk(%+v) = %v, want a ValidationError on %s", c.a, err, c.field)
		}
	}
}

func TestBulkRetryUnderLoad(t *testing.T) { eachBackend(t, testBulkRetryUnderLoad) }

// testBulkRetryUnderLoad: a bulk retry of 10,000 dead jobs while another goroutine keeps
// enqueueing: every dead job is retried and runs, and enqueues complete while the bulk is half
// way (its batches leave room for them), not only after it.
func testBulkRetryUnderLoad(t *testing.T, be storetest.Backend) {
	const n = 10_000
	rt, b := setupBulk(t, be)
	made := time.Now()
	dead := makeJobs(t, rt, b, n, jobs.StateDead)
	t.Logf("%s: made %d dead jobs in %v", be.Name, n, time.Since(made).Round(time.Millisecond))
	if err := rt.Resume(context.Background(), "bulk"); err != nil {
		t.Fatal(err)
	}
	var batches atomic.Int64
	rt.SetBulkHook(func([]string) { batches.Add(1) })

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var during, total atomic.Int64 // enqueues that returned while the bulk was half way; all
	var slowest atomic.Int64       // the longest enqueue, in ns (reported, not asserted)
	var enqErr atomic.Pointer[error]
	var loadIDs []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 5000 && ctx.Err() == nil; i++ { // bounded: the bulk ends long before
			t0 := time.Now()
			j, _, err := rt.Enqueue(context.Background(), jobs.EnqueueParams{Kind: "ok", Queue: "other"})
			if d := int64(time.Since(t0)); d > slowest.Load() {
				slowest.Store(d)
			}
			if err != nil {
				enqErr.Store(&err)
				return
			}
			loadIDs = append(loadIDs, j.ID)
			total.Add(1)
			if k := batches.Load(); k > 0 && k < n/jobs.DefaultBulkBatch {
				during.Add(1)
			}
		}
	}()
	start := time.Now()
	res, err := rt.Bulk(context.Background(), jobs.BulkAction{Op: jobs.BulkRetry, Filter: jobs.Filter{Queue: "bulk"}})
	took := time.Since(start)
	stop()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if p := enqErr.Load(); p != nil {
		t.Fatalf("a concurrent enqueue failed: %v", *p)
	}
	if want := (jobs.BulkResult{Matched: n, Changed: n}); res != want {
		t.Fatalf("bulk retry = %+v, want %+v", res, want)
	}
	if during.Load() == 0 {
		t.Fatalf("no concurrent enqueue returned while the bulk was half way (%d enqueues in all, %d batches)", total.Load(), batches.Load())
	}
	t.Logf("%s: bulk retry of %d dead jobs took %v in %d batches; %d concurrent enqueues, %d of them half way, the slowest %v",
		be.Name, n, took.Round(time.Millisecond), batches.Load(), total.Load(), during.Load(), time.Duration(slowest.Load()).Round(time.Millisecond))
	deadline := time.Now().Add(60 * time.Second)
	for {
		q, err := rt.Queue(context.Background(), "bulk")
		if err != nil {
			t.Fatal(err)
		}
		if q.Counts[jobs.StateSucceeded] == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the retried jobs did not all run in 60s: %v", q.Counts)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%s: all %d retried jobs ran %v after the bulk began", be.Name, n, time.Since(start).Round(time.Millisecond))
	for _, id := range []string{dead[0], dead[n-1]} {
		if j := waitState(t, rt, id, jobs.StateSucceeded); j.Attempt != 1 || len(j.Errors) != 1 {
			t.Fatalf("retried job %s: attempt %d, errors %v; want its second run to be attempt 1, the first error kept", id, j.Attempt, j.Errors)
		}
	}
	for _, id := range loadIDs {
		waitState(t, rt, id, jobs.StateSucceeded)
	}
}
