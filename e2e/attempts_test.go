package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// attemptJSON is a job as these tests read it.
type attemptJSON struct {
	ID          string  `json:"id"`
	State       string  `json:"state"`
	Attempt     int     `json:"attempt"`
	MaxAttempts int     `json:"max_attempts"`
	StartedAt   *string `json:"started_at"`
	Errors      []struct {
		Attempt int    `json:"attempt"`
		Error   string `json:"error"`
	} `json:"errors"`
}

func getJob(t *testing.T, url, id string) attemptJSON {
	t.Helper()
	var j attemptJSON
	code, err := call(context.Background(), &http.Client{Timeout: 10 * time.Second}, http.MethodGet, url+"/v1/jobs/"+id, "", nil, &j)
	if err != nil || code != http.StatusOK {
		t.Fatalf("get job %s: %d %v", id, code, err)
	}
	return j
}

// waitJob polls a job until ok says it is as wanted, or fails after 30 s. fail, when it says so,
// stops at once: a state the job must never reach.
func waitJob(t *testing.T, url, id, what string, ok, fail func(attemptJSON) bool) attemptJSON {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		j := getJob(t, url, id)
		switch {
		case fail != nil && fail(j):
			t.Fatalf("waiting for %s, the job is %s at attempt %d of %d (errors %v)", what, j.State, j.Attempt, j.MaxAttempts, j.Errors)
		case ok(j):
			return j
		case time.Now().After(deadline):
			t.Fatalf("after 30 s the job is %s at attempt %d of %d (errors %v), not %s", j.State, j.Attempt, j.MaxAttempts, j.Errors, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func enqueueOne(t *testing.T, url string, body map[string]any) string {
	t.Helper()
	var j attemptJSON
	code, err := call(context.Background(), &http.Client{Timeout: 10 * time.Second}, http.MethodPost, url+"/v1/jobs", "", body, &j)
	if err != nil || code != http.StatusCreated {
		t.Fatalf("enqueue: %d %v", code, err)
	}
	return j.ID
}

// TestCrashedAttemptCounts: an attempt cut short by kill -9 counts. A job of max_attempts 2 killed
// during both attempts is dead at attempt 2 after the restarts, and attempt 3 never starts: a job
// that kills its process ends dead instead of killing it at every start.
func TestCrashedAttemptCounts(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("crash test runs real processes")
	}
	env := []string{"TANDEM_STORE_PATH=" + filepath.Join(t.TempDir(), "tandem.db"), "TANDEM_JOBS_CONCURRENCY=1"}
	p := startTandem(t, env...)
	id := enqueueOne(t, p.HTTPURL, map[string]any{"kind": "sleep", "payload": map[string]any{"ms": 600_000}, "max_attempts": 2})
	beyond := func(j attemptJSON) bool { return j.Attempt > j.MaxAttempts }
	for attempt := 1; attempt <= 2; attempt++ {
		waitJob(t, p.HTTPURL, id, fmt.Sprintf("running attempt %d", attempt),
			func(j attemptJSON) bool { return j.State == "running" && j.Attempt == attempt }, beyond)
		p.Kill9()
		p = startTandem(t, env...)
	}
	j := waitJob(t, p.HTTPURL, id, "dead", func(j attemptJSON) bool { return j.State == "dead" }, beyond)
	if j.Attempt != 2 || len(j.Errors) != 2 || !strings.Contains(j.Errors[1].Error, "process stopped") {
		t.Fatalf("dead job: attempt %d of %d, errors %v; want 2 of 2 and both interruptions", j.Attempt, j.MaxAttempts, j.Errors)
	}
}

// TestGracefulStopGivesTheAttemptBack: an attempt cut short by SIGTERM does not count. A job of
// max_attempts 1 interrupted by a stop runs again after the restart as attempt 1 of 1, with the
// interruption recorded.
func TestGracefulStopGivesTheAttemptBack(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs real processes")
	}
	env := []string{"TANDEM_STORE_PATH=" + filepath.Join(t.TempDir(), "tandem.db"), "TANDEM_JOBS_CONCURRENCY=1",
		"TANDEM_JOBS_SHUTDOWN_TIMEOUT=200ms"}
	p := startTandem(t, env...)
	id := enqueueOne(t, p.HTTPURL, map[string]any{"kind": "sleep", "payload": map[string]any{"ms": 600_000}, "max_attempts": 1})
	waitJob(t, p.HTTPURL, id, "running", func(j attemptJSON) bool { return j.State == "running" }, nil)
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(30 * time.Second); code != 0 {
		t.Fatalf("SIGTERM: exit %d", code)
	}
	p = startTandem(t, env...)
	j := waitJob(t, p.HTTPURL, id, "running again as attempt 1", func(j attemptJSON) bool { return j.State == "running" && j.Attempt == 1 },
		func(j attemptJSON) bool { return j.Attempt > 1 || j.State == "dead" })
	if len(j.Errors) != 1 || j.Errors[0].Attempt != 1 || j.Errors[0].Error != "interrupted: shutdown" {
		t.Fatalf("errors %v; want the interruption of attempt 1", j.Errors)
	}
}

// TestPrefetchedJobsAreNotRunning: with 2 workers and 8 long jobs, the API, the job list and the
// metrics call running the 2 jobs the workers run, as the pool does; the 4 prefetched behind them
// (jobs.prefetch) have no started_at.
func TestPrefetchedJobsAreNotRunning(t *testing.T) {
	t.Parallel()
	p := startTandem(t, "TANDEM_STORE_PATH="+filepath.Join(t.TempDir(), "tandem.db"), "TANDEM_JOBS_CONCURRENCY=2", "TANDEM_JOBS_PREFETCH=4")
	for range 8 {
		enqueueOne(t, p.HTTPURL, map[string]any{"kind": "sleep", "payload": map[string]any{"ms": 600_000}})
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	type queue struct {
		Name                       string
		Ready, Prefetched, Running int
	}
	var q queue
	deadline := time.Now().Add(30 * time.Second)
	for {
		var qs struct {
			Queues []queue `json:"queues"`
		}
		if code, err := call(context.Background(), hc, http.MethodGet, p.HTTPURL+"/v1/queues", "", nil, &qs); err != nil || code != 200 {
			t.Fatalf("GET /v1/queues: %d %v", code, err)
		}
		q = qs.Queues[0]
		if q.Ready == 2 {
			break // the dispatcher has taken all it may: 2 running + 4 prefetched
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue %+v after 30 s", q)
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitJob := func(state string, n int) []attemptJSON {
		var page struct {
			Jobs []attemptJSON `json:"jobs"`
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			if code, err := call(context.Background(), hc, http.MethodGet, p.HTTPURL+"/v1/jobs?state="+state, "", nil, &page); err != nil || code != 200 {
				t.Fatalf("GET /v1/jobs?state=%s: %d %v", state, code, err)
			}
			if len(page.Jobs) == n || time.Now().After(deadline) {
				return page.Jobs
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	running, prefetched := waitJob("running", 2), waitJob("prefetched", 4)
	if len(running) != 2 || len(prefetched) != 4 {
		t.Fatalf("%d jobs listed running and %d prefetched; want 2 (the workers) and 4", len(running), len(prefetched))
	}
	for _, j := range running {
		if j.StartedAt == nil || j.Attempt != 1 {
			t.Errorf("running job %s: started_at %v, attempt %d", j.ID, j.StartedAt, j.Attempt)
		}
	}
	for _, j := range prefetched {
		if j.StartedAt != nil || j.Attempt != 0 {
			t.Errorf("prefetched job %s: started_at %v, attempt %d; want none and 0", j.ID, j.StartedAt, j.Attempt)
		}
	}
	var qs struct {
		Queues []queue `json:"queues"`
	}
	if _, err := call(context.Background(), hc, http.MethodGet, p.HTTPURL+"/v1/queues", "", nil, &qs); err != nil {
		t.Fatal(err)
	}
	if q := qs.Queues[0]; q.Running != 2 || q.Prefetched != 4 || q.Ready != 2 {
		t.Errorf("GET /v1/queues: %+v; want running 2, prefetched 4, ready 2", q)
	}
	m := scrape(t, p.AdminURL, "")
	if r, pr, pool := value(m, "tandem_queue_jobs", `state="running"`), value(m, "tandem_queue_jobs", `state="prefetched"`),
		value(m, "tandem_pool_running", `pool="jobs"`); r != 2 || pr != 4 || pool != 2 {
		t.Errorf("metrics: %v running and %v prefetched in the queue, %v running in the pool; want 2, 4, 2", r, pr, pool)
	}
}
