package e2e

import (
	"context"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestAutoscaleConvergesOnDemoLoad drives both controllers of a real tandem with synthetic load:
// the HTTP one on the CPU-bound /demo/cpu route must bring 16 threads down near the 2 cores, and
// the jobs one must grow its workers while I/O-bound sleep jobs wait; both stay inside their
// bounds. (operate_test.go covers the HTTP controller growing for /demo/io.)
func TestAutoscaleConvergesOnDemoLoad(t *testing.T) {
	// Serial: it measures where the controllers settle under CPU-bound load on this machine's cores;
	// another test's processes would take CPU from it and move the answer.
	if testing.Short() {
		t.Skip("drives load for up to a minute")
	}
	p := startTandem(t, "TANDEM_STORE_PATH="+filepath.Join(t.TempDir(), "db"), "TANDEM_SERVER_DEMO_ROUTES=true",
		"GOMAXPROCS=2", "TANDEM_SERVER_THREADS=16", "TANDEM_SERVER_AUTOSCALE_MIN=1", "TANDEM_SERVER_AUTOSCALE_MAX=64",
		"TANDEM_SERVER_QUEUE_TIMEOUT=10s", "TANDEM_JOBS_CONCURRENCY=1", "TANDEM_JOBS_AUTOSCALE_MIN=1", "TANDEM_JOBS_AUTOSCALE_MAX=8")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Jobs: 400 sleep jobs of 100 ms wait behind one worker, the CPU idles: the pool grows.
	ids := enqueueMany(ctx, t, p.HTTPURL, 400, 8, map[string]any{"kind": "sleep", "payload": map[string]any{"ms": 100}}, nil)
	if len(ids) != 400 {
		t.Fatalf("enqueued %d of 400", len(ids))
	}
	var peakJobs int
	deadline := time.Now().Add(30 * time.Second)
	for peakJobs < 3 && time.Now().Before(deadline) {
		peakJobs = max(peakJobs, pools(t, p, "")["jobs"].Size)
		time.Sleep(200 * time.Millisecond)
	}
	if peakJobs < 3 {
		t.Fatalf("the jobs pool stayed at %d workers with sleep jobs waiting:\n%s", peakJobs, p.Logs())
	}

	// HTTP: 32 clients on /demo/cpu, bounded in time; the threads must come down to the cores.
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for ctx.Err() == nil {
				_, _ = call(ctx, hc, "GET", p.HTTPURL+"/demo/cpu?n=20000", "", nil, nil)
			}
		})
	}
	low, sizes := false, []int{}
	deadline = time.Now().Add(40 * time.Second)
	for !low && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		all := pools(t, p, "")
		s := all["http"].Size
		sizes = append(sizes, s)
		if s < 1 || s > 64 || all["jobs"].Size < 1 || all["jobs"].Size > 8 {
			t.Fatalf("a pool left its bounds: %+v", all)
		}
		low = s <= 4
	}
	cancel()
	wg.Wait()
	if !low {
		t.Fatalf("threads on a CPU-bound route stayed above 4 on 2 cores: sizes %v\n%s", sizes, p.Logs())
	}
	t.Logf("jobs pool peaked at %d workers; http threads went %v", peakJobs, sizes)
}
