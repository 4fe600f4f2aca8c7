package jobs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
	"github.com/tandem-run/tandem/jobs"
)

// TestSharedBulk: on Postgres, a bulk action sent to one replica acts on jobs another replica
// runs: b retries the jobs that died on a (which a then runs), and cancels the job a is running
// (a's handler is stopped, the job ends canceled).
func TestSharedBulk(t *testing.T) {
	url := tandemtest.Postgres(t)
	running := make(chan struct{}, 1)
	stopped := make(chan struct{}, 1)
	a := newReplica(t, url, "a", 2, nil, func(rt *jobs.Runtime) {
		_ = rt.RegisterFunc("flaky", func(_ context.Context, j *jobs.Job) (any, error) {
			if len(j.Errors) == 0 {
				return nil, jobs.Permanent(errors.New("first run fails"))
			}
			return nil, nil
		})
		_ = rt.RegisterFunc("wait", func(ctx context.Context, _ *jobs.Job) (any, error) {
			running <- struct{}{}
			<-ctx.Done()
			stopped <- struct{}{}
			return nil, ctx.Err()
		})
	})
	b := newReplica(t, url, "b", 1, func(o *jobs.Options) { o.Queues = map[string]jobs.QueueOptions{"other": {}} }, nil)
	ctx := context.Background()
	ps := make([]jobs.EnqueueParams, 20)
	for i := range ps {
		ps[i] = jobs.EnqueueParams{Kind: "flaky", MaxAttempts: 1}
	}
	js, _, err := a.rt.EnqueueBatch(ctx, ps)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range js {
		waitState(t, b.rt, j.ID, jobs.StateDead)
	}
	res, err := b.rt.Bulk(ctx, jobs.BulkAction{Op: jobs.BulkRetry, BatchSize: 7})
	if want := (jobs.BulkResult{Matched: 20, Changed: 20}); err != nil || res != want {
		t.Fatalf("bulk retry through b = %+v, %v; want %+v", res, err, want)
	}
	for _, j := range js {
		if got := waitState(t, b.rt, j.ID, jobs.StateSucceeded); got.Attempt != 1 || len(got.AttemptedBy) != 2 || got.AttemptedBy[1] != "a" {
			t.Fatalf("retried job %+v: want its second run on a, as attempt 1", got)
		}
	}

	w, _, err := a.rt.Enqueue(ctx, jobs.EnqueueParams{Kind: "wait"})
	if err != nil {
		t.Fatal(err)
	}
	<-running
	waitState(t, b.rt, w.ID, jobs.StateRunning)
	res, err = b.rt.Bulk(ctx, jobs.BulkAction{Op: jobs.BulkCancel, Filter: jobs.Filter{Kind: "wait"}})
	if want := (jobs.BulkResult{Matched: 1, Changed: 1}); err != nil || res != want {
		t.Fatalf("bulk cancel through b = %+v, %v; want %+v", res, err, want)
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler on a was never stopped")
	}
	waitState(t, a.rt, w.ID, jobs.StateCanceled)
}
