package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/jobs/storetest"
)

// waitFor polls cond every millisecond until it holds, or fails after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func counts(t *testing.T, rt *jobs.Runtime, queue string) map[jobs.State]int {
	t.Helper()
	q, err := rt.Queue(context.Background(), queue)
	if err != nil {
		t.Fatal(err)
	}
	return q.Counts
}

// TestPrefetchedIsNotRunning: with one worker and prefetch 3, the store says running for the one
// job a worker runs and prefetched for the three waiting behind it, which have no start time and no
// attempt; a job's started_at is its handler's start, and its timeout counts from there.
func TestPrefetchedIsNotRunning(t *testing.T) { eachBackend(t, testPrefetchedIsNotRunning) }

func testPrefetchedIsNotRunning(t *testing.T, be storetest.Backend) {
	rt, b := setup(t, be, 1, func(o *jobs.Options) { o.Prefetch = 3 })
	release := make(chan struct{})
	var handlerStart sync.Map // id -> time.Time, read in the handler
	_ = rt.Register("block", jobs.Kind{Timeout: time.Minute, Handler: jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) (any, error) {
		handlerStart.Store(j.ID, time.Now())
		<-release
		return nil, nil
	})})
	_ = rt.Register("quick", jobs.Kind{Timeout: 100 * time.Millisecond, Handler: jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) (any, error) {
		handlerStart.Store(j.ID, time.Now())
		select {
		case <-ctx.Done(): // only if its timeout counted its wait behind the blocker
			return nil, context.Cause(ctx)
		case <-time.After(10 * time.Millisecond):
			return nil, nil
		}
	})})
	first := enqueue(t, rt, jobs.EnqueueParams{Kind: "block"})
	waitFor(t, "the first job runs", func() bool { _, ok := handlerStart.Load(first.ID); return ok })
	var behind []*jobs.Job
	for range 2 {
		behind = append(behind, enqueue(t, rt, jobs.EnqueueParams{Kind: "block"}))
	}
	quick := enqueue(t, rt, jobs.EnqueueParams{Kind: "quick", MaxAttempts: 1})
	behind = append(behind, quick)
	waitFor(t, "three jobs prefetched", func() bool { return counts(t, rt, "default")[jobs.StatePrefetched] == 3 })
	c := counts(t, rt, "default")
	if c[jobs.StateRunning] != 1 || b.pool.Stats().Running != 1 {
		t.Fatalf("the store counts %d running, the pool runs %d; want 1 and 1 (counts %v)", c[jobs.StateRunning], b.pool.Stats().Running, c)
	}
	for _, j := range behind {
		got, _ := rt.Get(context.Background(), j.ID)
		if got.State != jobs.StatePrefetched || got.StartedAt != nil || got.Attempt != 0 {
			t.Errorf("a job waiting for the worker: state %s, started_at %v, attempt %d; want prefetched, none, 0", got.State, got.StartedAt, got.Attempt)
		}
	}
	if running, _, err := rt.List(context.Background(), jobs.Filter{State: jobs.StateRunning}); err != nil || len(running) != 1 || running[0].ID != first.ID {
		t.Errorf("List state=running: %d jobs, %v; want the first only", len(running), err)
	}
	got, _ := rt.Get(context.Background(), first.ID)
	hs, _ := handlerStart.Load(first.ID)
	if got.State != jobs.StateRunning || got.Attempt != 1 || got.StartedAt == nil || got.StartedAt.After(hs.(time.Time)) {
		t.Errorf("the running job: %s, attempt %d, started_at %v; its handler started at %v", got.State, got.Attempt, got.StartedAt, hs)
	}
	time.Sleep(300 * time.Millisecond) // the quick job waits longer than its timeout
	released := time.Now()
	close(release)
	for _, j := range behind {
		done := waitState(t, rt, j.ID, jobs.StateSucceeded)
		hs, _ := handlerStart.Load(j.ID)
		if done.StartedAt.Before(released) || done.StartedAt.After(hs.(time.Time)) || done.Attempt != 1 {
			t.Errorf("job %s: started_at %v, attempt %d; the worker was free at %v, its handler started at %v",
				j.ID, done.StartedAt, done.Attempt, released, hs)
		}
	}
}

// TestShutdownGivesTheAttemptBack: at Stop, a job that outlives the grace period is canceled and
// goes back to ready with the interruption recorded and its attempt given back (a deploy is not
// the job's fault); a prefetched job goes back untouched.
func TestShutdownGivesTheAttemptBack(t *testing.T) { eachBackend(t, testShutdownGivesTheAttemptBack) }

func testShutdownGivesTheAttemptBack(t *testing.T, be storetest.Backend) {
	b := &testBundle{open: be.New(t)}
	rt := build(t, b, 1, func(o *jobs.Options) { o.ShutdownTimeout = 50 * time.Millisecond; o.Prefetch = 2 })
	started := make(chan struct{}, 10)
	_ = rt.RegisterFunc("forever", func(ctx context.Context, j *jobs.Job) (any, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	if err := rt.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	a := enqueue(t, rt, jobs.EnqueueParams{Kind: "forever", MaxAttempts: 1})
	<-started
	waiting := enqueue(t, rt, jobs.EnqueueParams{Kind: "forever"})
	waitFor(t, "the second job prefetched", func() bool {
		j, _ := rt.Get(context.Background(), waiting.ID)
		return j.State == jobs.StatePrefetched
	})
	if err := rt.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	ja, _ := b.store.Get(context.Background(), a.ID)
	if ja.State != jobs.StateReady || ja.Attempt != 0 || len(ja.Errors) != 1 || ja.Errors[0].Error != "interrupted: shutdown" || ja.Errors[0].Attempt != 1 {
		t.Errorf("interrupted job = %+v; want ready, attempt 0, one error for attempt 1", ja)
	}
	jw, _ := b.store.Get(context.Background(), waiting.ID)
	if jw.State != jobs.StateReady || jw.Attempt != 0 || len(jw.Errors) != 0 {
		t.Errorf("prefetched job = %+v", jw)
	}
}

// TestRecoverAfterCrash: of the jobs a dead process left leased, a prefetched one never ran and
// keeps its attempts; a running one's attempt counts, and at its last attempt the job is dead,
// never started again. A record from an older tandem that used its attempts is not started either.
func TestRecoverAfterCrash(t *testing.T) { eachBackend(t, testRecoverAfterCrash) }

func testRecoverAfterCrash(t *testing.T, be storetest.Backend) {
	b := &testBundle{open: be.New(t)}
	ctx := context.Background()
	st := b.open(t, nil)
	if _, shared := st.(jobs.Shared); shared {
		t.Skip("a Shared store's Recover hands no job: the leader rescues expired leases instead (the rescue tests)")
	}
	mk := func(max int) *jobs.Job {
		return &jobs.Job{Kind: "x", Queue: "default", State: jobs.StateReady, MaxAttempts: max, Timeout: time.Minute}
	}
	legacy := mk(2)
	legacy.UniqueKey = "legacy"
	js, _, err := st.Insert(ctx, []*jobs.Job{mk(5), mk(5), mk(1), legacy}, nil)
	if err != nil {
		t.Fatal(err)
	}
	prefetched, running, last := js[0], js[1], js[2]
	if _, wait, err := st.LeaseQueued(ctx, jobs.Lease{Queue: "default", N: 3, For: time.Minute}); err != nil || wait() != nil {
		t.Fatalf("lease: %v", err)
	}
	for _, j := range []*jobs.Job{running, last} { // a worker took these two
		if _, err := st.Update(ctx, j.ID, func(j *jobs.Job) error { j.State, j.Attempt = jobs.StateRunning, 1; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	// An older tandem counted an attempt at each lease and kept it at a restart: 2 of 2, ready.
	if _, err := st.Update(ctx, legacy.ID, func(j *jobs.Job) error { j.Attempt = 2; return nil }); err != nil {
		t.Fatal(err)
	}
	st.Close() // the "crash": three jobs are left leased in the store
	rt := build(t, b, 1, nil)
	var calls sync.Map
	_ = rt.RegisterFunc("x", func(_ context.Context, j *jobs.Job) (any, error) {
		n, _ := calls.LoadOrStore(j.ID, new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
		return nil, nil
	})
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if j := waitState(t, rt, prefetched.ID, jobs.StateSucceeded); j.Attempt != 1 || len(j.Errors) != 0 {
		t.Errorf("the prefetched job: attempt %d, errors %v; want 1 and none", j.Attempt, j.Errors)
	}
	if j := waitState(t, rt, running.ID, jobs.StateSucceeded); j.Attempt != 2 || len(j.Errors) != 1 || !strings.Contains(j.Errors[0].Error, "process stopped") {
		t.Errorf("the running job: attempt %d, errors %v; want 2 and the interruption", j.Attempt, j.Errors)
	}
	for _, id := range []string{last.ID, legacy.ID} {
		j := waitState(t, rt, id, jobs.StateDead)
		if _, ran := calls.Load(id); ran || j.Attempt > j.MaxAttempts || len(j.Errors) != 1 {
			t.Errorf("job %s: ran %v, attempt %d of %d, errors %v; want dead, never run again", id, ran, j.Attempt, j.MaxAttempts, j.Errors)
		}
	}
}

// syncBuffer is the logger's sink, read back as JSON records.
type syncBuffer struct{ tandemtest.SyncBuffer }

// records returns the JSON log records whose msg is msg.
func (s *syncBuffer) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestOutcomesAreLogged: every failed attempt is a warning with the job, its kind, queue, attempt,
// error and next run; a dead job is an error.
func TestOutcomesAreLogged(t *testing.T) { eachBackend(t, testOutcomesAreLogged) }

func testOutcomesAreLogged(t *testing.T, be storetest.Backend) {
	var logs syncBuffer
	rt, _ := setup(t, be, 1, func(o *jobs.Options) {
		o.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		o.Queues = map[string]jobs.QueueOptions{"mail": {}}
	})
	_ = rt.RegisterFunc("fail", func(context.Context, *jobs.Job) (any, error) { return nil, errors.New("smtp said no") })
	j := enqueue(t, rt, jobs.EnqueueParams{Kind: "fail", Queue: "mail", MaxAttempts: 2})
	waitState(t, rt, j.ID, jobs.StateDead)
	waitFor(t, "the dead job logged", func() bool { return len(logs.records(t, "job dead")) == 1 })
	failed := logs.records(t, "job attempt failed")
	if len(failed) != 1 {
		t.Fatalf("%d 'job attempt failed' records, want 1 (the first of 2 attempts)", len(failed))
	}
	f := failed[0]
	if f["level"] != "WARN" || f["job"] != j.ID || f["kind"] != "fail" || f["queue"] != "mail" || f["attempt"] != 1.0 ||
		f["err"] != "smtp said no" || f["next_run_at"] == nil {
		t.Errorf("failed attempt logged as %v", f)
	}
	d := logs.records(t, "job dead")[0]
	if d["level"] != "ERROR" || d["job"] != j.ID || d["kind"] != "fail" || d["queue"] != "mail" || d["attempt"] != 2.0 ||
		d["max_attempts"] != 2.0 || d["err"] != "smtp said no" {
		t.Errorf("dead job logged as %v", d)
	}
}

// TestAutoPrefetchGrowsWithinItsBound: at the default (auto) prefetch, a queue of tiny jobs, whose
// leases take far longer than the jobs, comes to prefetch PrefetchMax, and never more: while the
// workers are blocked, the store holds exactly concurrency + PrefetchMax leased jobs, which is
// what a crash could run again.
func TestAutoPrefetchGrowsWithinItsBound(t *testing.T) {
	eachBackend(t, testAutoPrefetchGrowsWithinItsBound)
}

func testAutoPrefetchGrowsWithinItsBound(t *testing.T, be storetest.Backend) {
	const workers, most = 2, 6
	rt, _ := setup(t, be, workers, func(o *jobs.Options) { o.PrefetchMax = most })
	release := make(chan struct{})
	_ = rt.RegisterFunc("noop", func(context.Context, *jobs.Job) (any, error) { return nil, nil })
	_ = rt.RegisterFunc("block", func(context.Context, *jobs.Job) (any, error) { <-release; return nil, nil })
	defer close(release)
	tiny := make([]jobs.EnqueueParams, 50)
	for i := range tiny {
		tiny[i] = jobs.EnqueueParams{Kind: "noop"}
	}
	if _, _, err := rt.EnqueueBatch(context.Background(), tiny); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the tiny jobs done", func() bool { return counts(t, rt, "default")[jobs.StateSucceeded] == len(tiny) })
	blocking := make([]jobs.EnqueueParams, 40)
	for i := range blocking {
		blocking[i] = jobs.EnqueueParams{Kind: "block"}
	}
	if _, _, err := rt.EnqueueBatch(context.Background(), blocking); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "prefetch at its bound", func() bool {
		c := counts(t, rt, "default")
		return c[jobs.StateRunning] == workers && c[jobs.StatePrefetched] == most
	})
	for range 3 { // and it stays there: nothing more is leased while the workers are blocked
		rt.Resize(workers) // wakes the dispatcher
		time.Sleep(20 * time.Millisecond)
		if c := counts(t, rt, "default"); c[jobs.StateRunning]+c[jobs.StatePrefetched] != workers+most {
			t.Fatalf("leased %d running + %d prefetched, want %d + %d", c[jobs.StateRunning], c[jobs.StatePrefetched], workers, most)
		}
	}
}
