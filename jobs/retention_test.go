package jobs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/jobs/storetest"
)

// TestRetentionSweepsFinishedJobs: a finished job is deleted once it is older than Retention; a
// waiting one is never.
func TestRetentionSweepsFinishedJobs(t *testing.T) { eachBackend(t, testRetentionSweepsFinishedJobs) }

func testRetentionSweepsFinishedJobs(t *testing.T, be storetest.Backend) {
	rt, _ := setup(t, be, 1, func(o *jobs.Options) { o.Retention = 50 * time.Millisecond })
	_ = rt.RegisterFunc("x", func(context.Context, *jobs.Job) (any, error) { return nil, nil })
	_ = rt.RegisterFunc("fail", func(context.Context, *jobs.Job) (any, error) { return nil, jobs.Permanent(errors.New("no")) })
	done := enqueue(t, rt, jobs.EnqueueParams{Kind: "x"})
	dead := enqueue(t, rt, jobs.EnqueueParams{Kind: "fail"})
	later := enqueue(t, rt, jobs.EnqueueParams{Kind: "x", Delay: time.Hour})
	for _, id := range []string{done.ID, dead.ID} {
		waitFor(t, "the finished job swept", func() bool {
			_, err := rt.Get(context.Background(), id)
			return errors.Is(err, jobs.ErrNotFound)
		})
	}
	if j, err := rt.Get(context.Background(), later.ID); err != nil || j.State != jobs.StateScheduled {
		t.Fatalf("a waiting job after the sweeps: %+v, %v", j, err)
	}
}
