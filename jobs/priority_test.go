package jobs_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/jobs/storetest"
)

// TestPrioritiesRunBestFirst: with one worker, jobs that wait together start best first: higher
// priority, then the order they were enqueued in.
func TestPrioritiesRunBestFirst(t *testing.T) { eachBackend(t, testPrioritiesRunBestFirst) }

func testPrioritiesRunBestFirst(t *testing.T, be storetest.Backend) {
	rt, _ := setup(t, be, 1, func(o *jobs.Options) { o.Prefetch = 1 })
	var mu sync.Mutex
	var order []string
	_ = rt.RegisterFunc("p", func(_ context.Context, j *jobs.Job) (any, error) {
		mu.Lock()
		order = append(order, fmt.Sprintf("%d%s", j.Priority, j.Payload))
		mu.Unlock()
		return nil, nil
	})
	ctx := context.Background()
	if err := rt.Pause(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i, p := range []int{0, 5, 9, 3, 9, 0, 7} {
		ids = append(ids, enqueue(t, rt, jobs.EnqueueParams{Kind: "p", Priority: p, Payload: []byte(fmt.Sprint(i))}).ID)
	}
	if err := rt.Resume(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		waitState(t, rt, id, jobs.StateSucceeded)
	}
	mu.Lock()
	defer mu.Unlock()
	if got, want := fmt.Sprint(order), "[92 94 76 51 33 00 05]"; got != want {
		t.Fatalf("start order (priority, enqueue index) %s, want %s", got, want)
	}
}
