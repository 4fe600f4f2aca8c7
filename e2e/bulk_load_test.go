package e2e

import (
	"context"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBulkRetryUnderLoadProcess: a real tandem with 10,000 dead jobs retries them all through
// POST /admin/jobs/bulk while clients keep enqueueing and reading queues over HTTP: every dead job
// runs again (it dies again, with its second error), every concurrent request is answered 2xx,
// and some of them complete while the bulk is in progress. Durations are logged, not asserted.
func TestBulkRetryUnderLoadProcess(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("10,000 jobs, twice")
	}
	const n = 10_000
	p := startTandem(t, "TANDEM_STORE_PATH="+filepath.Join(t.TempDir(), "db"), "TANDEM_JOBS_CONCURRENCY=16", "TANDEM_STORE_SYNC=none")
	c := &http.Client{Timeout: 30 * time.Second}
	ctx := context.Background()

	// Dead jobs, cheaply: an http job to a port nothing listens on fails at once, and with
	// max_attempts 1 that failure is its last.
	made := time.Now()
	for range n / 1000 {
		batch := make([]map[string]any, 1000)
		for i := range batch {
			batch[i] = map[string]any{"kind": "http", "payload": map[string]any{"url": "http://127.0.0.1:1/"}, "max_attempts": 1}
		}
		if code, err := call(ctx, c, "POST", p.HTTPURL+"/v1/jobs/batch", "", map[string]any{"jobs": batch}, nil); err != nil || code != 201 {
			t.Fatalf("enqueue batch: %d, %v", code, err)
		}
	}
	dead := func() int {
		var qs struct{ Queues []struct{ Dead int } }
		if code, err := call(ctx, c, "GET", p.HTTPURL+"/v1/queues", "", nil, &qs); err != nil || code != 200 || len(qs.Queues) == 0 {
			t.Fatalf("queues: %d, %v", code, err)
		}
		return qs.Queues[0].Dead
	}
	waitDead := func(what string) {
		deadline := time.Now().Add(3 * time.Minute)
		for dead() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d of %d dead after 3 minutes", what, dead(), n)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitDead("the first runs")
	t.Logf("made %d dead jobs in %v", n, time.Since(made).Round(time.Millisecond))

	// The load: two clients, one enqueueing noop jobs, one reading the queues, each bounded.
	var inBulk atomic.Bool
	var during, total, failed atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, req := range []struct {
		method, path string
		body         any
	}{{"POST", "/v1/jobs", map[string]any{"kind": "noop"}}, {"GET", "/v1/queues", nil}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20_000; i++ {
				select {
				case <-done:
					return
				default:
				}
				before := inBulk.Load()
				code, err := call(ctx, c, req.method, p.HTTPURL+req.path, "", req.body, nil)
				total.Add(1)
				if err != nil || code >= 300 {
					failed.Add(1)
					t.Errorf("%s %s during the bulk: %d, %v", req.method, req.path, code, err)
					return
				}
				if before && inBulk.Load() {
					during.Add(1)
				}
			}
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); total.Load() < 10; { // the load is under way before the bulk starts
		if time.Now().After(deadline) {
			t.Fatal("the load did not start")
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	inBulk.Store(true)
	var tot struct{ Matched, Changed, Skipped int }
	cursor, calls := "", 0
	for {
		var res struct {
			Matched, Changed, Skipped int
			NextCursor                string `json:"next_cursor"`
		}
		body := map[string]any{"action": "retry", "filter": map[string]any{"state": "dead", "kind": "http"}, "cursor": cursor}
		if code, err := call(ctx, c, "POST", p.AdminURL+"/admin/jobs/bulk", "", body, &res); err != nil || code != 200 {
			t.Fatalf("bulk retry: %d, %v", code, err)
		}
		calls++
		tot.Matched, tot.Changed, tot.Skipped = tot.Matched+res.Matched, tot.Changed+res.Changed, tot.Skipped+res.Skipped
		if cursor = res.NextCursor; cursor == "" || calls == 100 {
			break
		}
	}
	inBulk.Store(false)
	took := time.Since(start)
	close(done)
	wg.Wait()
	if tot.Matched != n || tot.Changed != n || tot.Skipped != 0 || cursor != "" {
		t.Fatalf("bulk retry in %d calls: %+v, cursor %q; want all %d changed", calls, tot, cursor, n)
	}
	if failed.Load() > 0 || during.Load() == 0 {
		t.Fatalf("%d concurrent requests, %d failed, %d completed during the bulk: want none failed and some during", total.Load(), failed.Load(), during.Load())
	}
	t.Logf("bulk retry of %d dead jobs: %v in %d calls; %d concurrent requests, %d of them during the bulk", n, took.Round(time.Millisecond), calls, total.Load(), during.Load())

	// Every retried job ran again: dead again, now with both attempts' errors.
	waitDead("the second runs")
	t.Logf("all %d retried jobs ran again %v after the bulk began", n, time.Since(start).Round(time.Millisecond))
	seen, next := 0, ""
	for page := 0; page < 20; page++ {
		var list struct {
			Jobs []struct {
				State  string
				Errors []any
			}
			NextCursor string `json:"next_cursor"`
		}
		url := p.HTTPURL + "/v1/jobs?kind=http&limit=1000" + map[bool]string{true: "", false: "&cursor=" + next}[next == ""]
		if code, err := call(ctx, c, "GET", url, "", nil, &list); err != nil || code != 200 {
			t.Fatalf("list: %d, %v", code, err)
		}
		for _, j := range list.Jobs {
			if j.State != "dead" || len(j.Errors) != 2 {
				t.Fatalf("a retried job is %s with %d errors, want dead with 2", j.State, len(j.Errors))
			}
			seen++
		}
		if next = list.NextCursor; next == "" {
			break
		}
	}
	if seen != n {
		t.Fatalf("listed %d http jobs, want %d", seen, n)
	}
}
