package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// TestAutoscaleGrowsAtOnceAndShrinksWhenIdle: 386 sleep jobs land on one pinned worker with the
// CPU idle: the jobs pool reaches its max of 8 in at most two resizes (not one worker a tick).
// Once they are done and it has been quiet for jobs.autoscale.quiet, it comes down to 1 and the
// OS threads pinned for the other workers end. The HTTP pool, idle all along but for the
// enqueues, comes down from 16 threads to its min.
func TestAutoscaleGrowsAtOnceAndShrinksWhenIdle(t *testing.T) {
	// Serial: growth waits for spare CPU, which other tests' processes would take.
	p := startTandem(t, "TANDEM_STORE_PATH="+filepath.Join(t.TempDir(), "db"), "GOMAXPROCS=2",
		"TANDEM_SERVER_THREADS=16", "TANDEM_SERVER_AUTOSCALE_MIN=1", "TANDEM_SERVER_AUTOSCALE_MAX=64", "TANDEM_SERVER_AUTOSCALE_QUIET=3s",
		"TANDEM_JOBS_CONCURRENCY=1", "TANDEM_JOBS_PIN_CPUS=true", "TANDEM_JOBS_AUTOSCALE_MIN=1", "TANDEM_JOBS_AUTOSCALE_MAX=8",
		"TANDEM_JOBS_AUTOSCALE_QUIET=3s")
	ctx := context.Background()
	sleep := map[string]any{"kind": "sleep", "payload": map[string]any{"ms": 100}}
	for _, n := range []int{100, 100, 100, 86} {
		batch := make([]any, n)
		for i := range batch {
			batch[i] = sleep
		}
		if code, err := call(ctx, http.DefaultClient, "POST", p.HTTPURL+"/v1/jobs/batch", "", map[string]any{"jobs": batch}, nil); err != nil || code != http.StatusCreated {
			t.Fatalf("enqueue a batch: %d %v", code, err)
		}
	}
	// Polls go to the admin listener, which the HTTP pool does not serve: it stays idle.
	poll := func(what string, limit time.Duration, cond func(map[string]poolJSON) bool) map[string]poolJSON {
		t.Helper()
		deadline := time.Now().Add(limit)
		for {
			all := pools(t, p, "")
			if cond(all) {
				return all
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s; pools %+v\n%s", what, limit, all, p.Logs())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	poll("jobs pool at its max of 8", 30*time.Second, func(all map[string]poolJSON) bool { return all["jobs"].Size == 8 })
	steps := resizes(t, p.Logs(), "jobs")
	// One worker a tick (the old controller) takes 7 resizes from 1 to 8. Growing in proportion
	// takes 2: a quarter on the first busy tick, then the backlog. A third is allowed because on
	// a loaded machine a tick can catch a worker between two 100 ms jobs, which is not a busy
	// tick, and the next busy one counts as the first again.
	if len(steps) == 0 || len(steps) > 3 {
		t.Fatalf("the jobs pool went %v to reach 8 workers: want at most 3 resizes", steps)
	}
	t.Logf("the jobs pool went 1 -> %v", steps)
	pid := p.Cmd.Process.Pid
	cpus := len(cpuList(t, "/proc/self/status")) // the child's too; its main thread may run a pinned worker
	if cpus >= 2 {
		if n := pinnedThreads(t, pid); n < 2 {
			t.Fatalf("%d pinned threads with 8 workers busy, want at least 2", n)
		}
	}
	poll("all 386 jobs done and the jobs pool back at 1", 90*time.Second, func(all map[string]poolJSON) bool { return all["jobs"].Size == 1 })
	if cpus >= 2 {
		deadline := time.Now().Add(10 * time.Second)
		for pinnedThreads(t, pid) > 1 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if n := pinnedThreads(t, pid); n > 1 {
			t.Fatalf("%d pinned threads left after the jobs pool shrank to 1 worker", n)
		}
	} else {
		t.Logf("one CPU allowed: pinned threads cannot be told from others; not counted")
	}
	poll("idle HTTP pool down to its min", 30*time.Second, func(all map[string]poolJSON) bool { return all["http"].Size == 1 })
	var q struct {
		Queues []struct{ Succeeded int } `json:"queues"`
	}
	if _, err := call(ctx, http.DefaultClient, "GET", p.AdminURL+"/admin/api/v1/queues", "", nil, &q); err != nil || len(q.Queues) != 1 || q.Queues[0].Succeeded != 386 {
		t.Fatalf("queues %+v (%v), want 386 jobs succeeded", q, err)
	}
}

// resizes lists the sizes the autoscaler gave pool, from its "autoscale" log lines, up to the
// first at its largest.
func resizes(t *testing.T, logs, pool string) []int {
	t.Helper()
	var sizes []int
	for line := range strings.Lines(logs) {
		var l struct {
			Msg  string `json:"msg"`
			Pool string `json:"pool"`
			New  int    `json:"new"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "autoscale" && l.Pool == pool {
			sizes = append(sizes, l.New)
		}
	}
	return sizes
}

// pinnedThreads counts the threads of process pid that the kernel lets run on a single CPU.
func pinnedThreads(t *testing.T, pid int) int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, task := range tasks {
		if len(cpuList(t, filepath.Join(dir, task.Name(), "status"))) == 1 {
			n++
		}
	}
	return n
}

// cpuList reads Cpus_allowed_list from a /proc status file; nil if the thread has gone.
func cpuList(t *testing.T, status string) []int {
	t.Helper()
	b, err := os.ReadFile(status)
	if err != nil {
		return nil
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			var cpus []int
			for part := range strings.SplitSeq(strings.TrimSpace(v), ",") {
				lo, hi, _ := strings.Cut(part, "-")
				a, _ := strconv.Atoi(lo)
				b := a
				if hi != "" {
					b, _ = strconv.Atoi(hi)
				}
				for c := a; c <= b; c++ {
					cpus = append(cpus, c)
				}
			}
			return cpus
		}
	}
	t.Fatalf("%s: no Cpus_allowed_list", status)
	return nil
}
