package e2e

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// yieldJSON is the jobs pool's yield as GET /admin/pools shows it.
type yieldJSON struct {
	Limit  int    `json:"limit"`
	Reason string `json:"reason"`
	Yields int    `json:"yields"`
}

func jobsYield(t *testing.T, p *proc) *yieldJSON {
	t.Helper()
	var out map[string]struct {
		Size  int        `json:"size"`
		Yield *yieldJSON `json:"yield"`
	}
	if _, err := call(context.Background(), http.DefaultClient, "GET", p.AdminURL+"/admin/pools", "", nil, &out); err != nil {
		t.Fatal(err)
	}
	if out["jobs"].Size != 2 {
		t.Fatalf("jobs pool size %d, want 2: a yield must not resize it", out["jobs"].Size)
	}
	return out["jobs"].Yield
}

// TestJobsYieldToHTTPProcess: a real tandem with 2 workers on 2 cores runs a backlog of cpu jobs
// while /demo/hello is requested about 200 times a second: the jobs pool yields (limit 1, counted
// in the metrics, the pool still of size 2); once the requests stop it takes the cores back. With
// jobs.yield_to_http false no yield is shown. Each load loop is bounded in count and time.
func TestJobsYieldToHTTPProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("drives load for several seconds")
	}
	p := startTandem(t, "TANDEM_STORE_PATH="+filepath.Join(t.TempDir(), "db"), "TANDEM_SERVER_DEMO_ROUTES=true",
		"GOMAXPROCS=2", "TANDEM_JOBS_CONCURRENCY=2")
	if y := jobsYield(t, p); y == nil || y.Limit != 0 {
		t.Fatalf("yield %+v at the start, want shown with no limit", y)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	// About 30 ms of CPU each: 600 keep two workers busy for longer than the test needs.
	ids := enqueueMany(ctx, t, p.AdminURL+"/admin/api", 600, 4, map[string]any{"kind": "cpu", "payload": map[string]any{"n": 200000}}, nil)
	if len(ids) != 600 {
		t.Fatalf("enqueued %d of 600", len(ids))
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for range 6000 { // at most 30 s
			select {
			case <-stop:
				return
			case <-tick.C:
				_, _ = call(ctx, hc, "GET", p.HTTPURL+"/demo/hello", "", nil, nil)
			}
		}
	}()
	var y *yieldJSON
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if y = jobsYield(t, p); y != nil && y.Limit == 1 {
			break
		}
	}
	close(stop)
	<-done
	if y == nil || y.Limit != 1 || y.Reason == "" {
		t.Fatalf("yield %+v with cpu jobs on both cores and requests arriving, want limit 1\n%s", y, p.Logs())
	}
	if n := value(scrape(t, p.AdminURL, ""), "tandem_jobs_yields_total"); n < 1 {
		t.Fatalf("tandem_jobs_yields_total %v after a yield", n)
	}
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if y = jobsYield(t, p); y.Limit == 0 {
			break
		}
	}
	if y.Limit != 0 {
		t.Fatalf("yield %+v after the requests stopped, want the limit lifted", y)
	}

	off := startTandem(t, "TANDEM_STORE_PATH="+filepath.Join(t.TempDir(), "db"), "GOMAXPROCS=2", "TANDEM_JOBS_CONCURRENCY=2",
		"TANDEM_JOBS_YIELD_TO_HTTP=false")
	if y := jobsYield(t, off); y != nil {
		t.Fatalf("yield %+v with jobs.yield_to_http false, want none shown", y)
	}
}
