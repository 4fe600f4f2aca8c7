package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
)

// Replicas: several `tandem serve` on one Postgres database share one queue. These tests run
// real processes on a real server (tandemtest.Postgres); replicas_crash_test.go kills them and
// stops the server.

// replicaJob is a job as the replica tests read it.
type replicaJob struct {
	ID          string   `json:"id"`
	State       string   `json:"state"`
	Attempt     int      `json:"attempt"`
	AttemptedBy []string `json:"attempted_by"`
	Errors      []struct {
		Attempt int    `json:"attempt"`
		Error   string `json:"error"`
	} `json:"errors"`
}

// queueCounts is GET /v1/queues' entry for one queue.
type queueCounts struct {
	Name                                                             string
	Paused                                                           bool
	Scheduled, Ready, Prefetched, Running, Retrying, Succeeded, Dead int
}

// pgEnv is the environment of replica `name` on the Postgres database at db.
func pgEnv(db, name string, env ...string) []string {
	return append([]string{"TANDEM_STORE_BACKEND=postgres", "TANDEM_STORE_URL=" + db, "TANDEM_NODE_NAME=" + name}, env...)
}

// startReplicas starts one replica per name on db, all at once, and waits for each to start.
func startReplicas(t *testing.T, db string, names []string, env ...string) []*proc {
	t.Helper()
	ps := make([]*proc, len(names))
	for i, n := range names {
		ps[i] = startTandemNoWait(t, nil, pgEnv(db, n, env...)...)
	}
	for _, p := range ps {
		p.WaitStarted()
	}
	return ps
}

var apiClient = &http.Client{Timeout: 10 * time.Second}

// getReplicaJob reads one job through the replica at base.
func getReplicaJob(t *testing.T, base, id string) replicaJob {
	t.Helper()
	var j replicaJob
	if code, err := call(context.Background(), apiClient, http.MethodGet, base+"/v1/jobs/"+id, "", nil, &j); err != nil || code != http.StatusOK {
		t.Fatalf("get job %s: %d %v", id, code, err)
	}
	return j
}

// listReplicaJobs pages through GET /v1/jobs?state=state on base.
func listReplicaJobs(t *testing.T, base, state string) []replicaJob {
	t.Helper()
	var all []replicaJob
	cursor := ""
	for range 1000 {
		var page struct {
			Jobs       []replicaJob `json:"jobs"`
			NextCursor string       `json:"next_cursor"`
		}
		u := base + "/v1/jobs?limit=1000&state=" + state + "&cursor=" + url.QueryEscape(cursor)
		if code, err := call(context.Background(), apiClient, http.MethodGet, u, "", nil, &page); err != nil || code != http.StatusOK {
			t.Fatalf("GET %s: %d %v", u, code, err)
		}
		all = append(all, page.Jobs...)
		if cursor = page.NextCursor; cursor == "" {
			return all
		}
	}
	t.Fatalf("GET /v1/jobs?state=%s: more than 1000 pages", state)
	return nil
}

// defaultQueue reads the default queue's counts through base.
func defaultQueue(t *testing.T, base string) queueCounts {
	t.Helper()
	var qs struct{ Queues []queueCounts }
	if code, err := call(context.Background(), apiClient, http.MethodGet, base+"/v1/queues", "", nil, &qs); err != nil || code != http.StatusOK {
		t.Fatalf("GET /v1/queues: %d %v", code, err)
	}
	for _, q := range qs.Queues {
		if q.Name == "default" {
			return q
		}
	}
	t.Fatalf("GET /v1/queues lacks the default queue: %+v", qs.Queues)
	return queueCounts{}
}

// waitQueue polls the default queue through base until ok holds, or fails after d.
func waitQueue(t *testing.T, base, what string, d time.Duration, ok func(queueCounts) bool) queueCounts {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		q := defaultQueue(t, base)
		if ok(q) {
			return q
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s the default queue is %+v, not %s", d, q, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// enqueueRoundRobin posts n jobs from `clients` goroutines, the i-th (from 0) through
// replicas[i%len(replicas)], and returns each acknowledged job's id with the index of the replica
// it was posted to. Any answer but 201 fails the test.
func enqueueRoundRobin(t *testing.T, replicas []*proc, n, clients int, body func(i int) map[string]any) map[string]int {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	defer hc.CloseIdleConnections()
	var mu sync.Mutex
	ids := make(map[string]int, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				r := i % len(replicas)
				var j replicaJob
				code, err := call(context.Background(), hc, http.MethodPost, replicas[r].HTTPURL+"/v1/jobs", "", body(i), &j)
				if err != nil || code != http.StatusCreated {
					t.Errorf("enqueue %d through replica %d: %d %v", i, r, code, err)
					return
				}
				mu.Lock()
				ids[j.ID] = r
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return ids
}

// TestReplicasShareTheQueue: 3,000 jobs posted round-robin to three replicas each run exactly
// once (attempt 1, on one node), and every replica runs jobs posted to the others: the queue is
// one, not three.
func TestReplicasShareTheQueue(t *testing.T) {
	t.Parallel()
	db := tandemtest.Postgres(t)
	names := []string{"r1", "r2", "r3"}
	rs := startReplicas(t, db, names, "TANDEM_JOBS_CONCURRENCY=8")
	const n = 3000
	start := time.Now()
	// 5 to 20 ms each: long enough that no replica drains what it was given before the others
	// look, short enough that 3,000 take a few seconds on 24 workers.
	ids := enqueueRoundRobin(t, rs, n, 24, func(i int) map[string]any {
		return map[string]any{"kind": "sleep", "payload": map[string]any{"ms": 5 + i%16}}
	})
	if len(ids) != n {
		t.Fatalf("%d distinct ids for %d enqueues", len(ids), n)
	}
	enqueued := time.Since(start)
	waitQueue(t, rs[0].HTTPURL, fmt.Sprintf("%d succeeded", n), 90*time.Second, func(q queueCounts) bool {
		if q.Dead > 0 || q.Retrying > 0 {
			t.Fatalf("jobs failed: %+v", q)
		}
		return q.Succeeded >= n
	})
	drained := time.Since(start)
	done := listReplicaJobs(t, rs[1].HTTPURL, "succeeded")
	if len(done) != n {
		t.Fatalf("%d succeeded jobs listed, want %d", len(done), n)
	}
	ran := map[string]int{}      // jobs each node ran
	ranOther := map[string]int{} // of those, jobs posted to another replica
	for _, j := range done {
		posted, ok := ids[j.ID]
		if !ok {
			t.Fatalf("succeeded job %s was never enqueued", j.ID)
		}
		if j.Attempt != 1 || len(j.AttemptedBy) != 1 || len(j.Errors) != 0 {
			t.Errorf("job %s: attempt %d, attempted_by %v, errors %v; want one attempt on one node", j.ID, j.Attempt, j.AttemptedBy, j.Errors)
			continue
		}
		node := j.AttemptedBy[0]
		if !slices.Contains(names, node) {
			t.Errorf("job %s attempted by %q, not a replica", j.ID, node)
		}
		ran[node]++
		if node != names[posted] {
			ranOther[node]++
		}
	}
	for _, n := range names {
		if ranOther[n] == 0 {
			t.Errorf("replica %s ran no job posted to another replica (ran %v, of them posted elsewhere %v)", n, ran, ranOther)
		}
	}
	t.Logf("%d jobs: enqueued in %s, drained in %s; ran per node %v, of them posted to another replica %v",
		n, enqueued.Round(time.Millisecond), drained.Round(time.Millisecond), ran, ranOther)
}

// TestLaterReplicaDrainsTheBacklog: a backlog that piled up on one slow replica (one worker,
// 300 ms jobs) is taken up by a replica started afterwards, which finds the ready jobs without an
// enqueue to wake it.
func TestLaterReplicaDrainsTheBacklog(t *testing.T) {
	t.Parallel()
	db := tandemtest.Postgres(t)
	r1 := startReplicas(t, db, []string{"r1"}, "TANDEM_JOBS_CONCURRENCY=1")[0]
	const n = 30
	var ids []string
	for range n {
		ids = append(ids, enqueueOne(t, r1.HTTPURL, map[string]any{"kind": "sleep", "payload": map[string]any{"ms": 300}}))
	}
	waitQueue(t, r1.HTTPURL, "one running", 10*time.Second, func(q queueCounts) bool { return q.Running == 1 })
	start := time.Now()
	r2 := startReplicas(t, db, []string{"r2"}, "TANDEM_JOBS_CONCURRENCY=4")[0]
	// The precondition: r1 alone (about 3 jobs a second) has left most of the backlog to r2.
	if q := defaultQueue(t, r2.HTTPURL); q.Ready < n/2 {
		t.Fatalf("only %d ready when r2 started (%+v): no backlog to test", q.Ready, q)
	}
	waitQueue(t, r2.HTTPURL, fmt.Sprintf("%d succeeded", n), 30*time.Second, func(q queueCounts) bool { return q.Succeeded == n })
	took := time.Since(start)
	ran := map[string]int{}
	for _, id := range ids {
		j := getReplicaJob(t, r1.HTTPURL, id)
		if j.Attempt != 1 || len(j.AttemptedBy) != 1 {
			t.Errorf("job %s: attempt %d, attempted_by %v; want one attempt on one node", id, j.Attempt, j.AttemptedBy)
			continue
		}
		ran[j.AttemptedBy[0]]++
	}
	// r2 has 4 workers to r1's 1: it should run most of what was left, and at the very least some.
	if ran["r2"] == 0 {
		t.Fatalf("r2 ran none of the backlog; ran per node %v", ran)
	}
	t.Logf("backlog drained %s after r2 started; ran per node %v", took.Round(time.Millisecond), ran)
}

// TestUniqueKeyAndPauseAcrossReplicas: a unique key holds across replicas (the same key posted
// to two of them at the same instant gives one job, 100 times over), and a pause through one
// replica stops leasing on all of them until a resume through a third.
func TestUniqueKeyAndPauseAcrossReplicas(t *testing.T) {
	t.Parallel()
	db := tandemtest.Postgres(t)
	rs := startReplicas(t, db, []string{"r1", "r2", "r3"}, "TANDEM_JOBS_CONCURRENCY=4")

	const keys = 100
	for k := range keys {
		// Delayed an hour: the first job stays live, so the second enqueue must find it.
		body := map[string]any{"kind": "noop", "unique_key": fmt.Sprintf("key-%d", k), "delay": "1h"}
		var codes [2]int
		var got [2]replicaJob
		var errs [2]error
		gate := make(chan struct{})
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				<-gate
				codes[i], errs[i] = call(context.Background(), apiClient, http.MethodPost, rs[i].HTTPURL+"/v1/jobs", "", body, &got[i])
			})
		}
		close(gate)
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("key %d: %v %v", k, errs[0], errs[1])
		}
		if c := []int{codes[0], codes[1]}; !slices.Equal(c, []int{201, 200}) && !slices.Equal(c, []int{200, 201}) || got[0].ID != got[1].ID {
			t.Fatalf("key %d through r1 and r2 at once: %d %s and %d %s; want one 201 and one 200 with the same job", k, codes[0], got[0].ID, codes[1], got[1].ID)
		}
	}
	if q := defaultQueue(t, rs[2].HTTPURL); q.Scheduled != keys {
		t.Fatalf("%d scheduled jobs after %d unique keys posted twice each: %+v", q.Scheduled, keys, q)
	}

	if code, err := call(context.Background(), apiClient, http.MethodPost, rs[0].AdminURL+"/admin/queues/default/pause", "", nil, nil); err != nil || code != http.StatusOK {
		t.Fatalf("pause through r1: %d %v", code, err)
	}
	// 24 jobs of 300 ms: more than one replica leases at once (4 workers + 4 prefetched), so after
	// the resume every replica must lease some, not only the one that resumed the queue.
	const n = 24
	for range n {
		enqueueOne(t, rs[1].HTTPURL, map[string]any{"kind": "sleep", "payload": map[string]any{"ms": 300}})
	}
	// Nothing may lease them; 2 s covers notifications and the stores' fallback polls.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		for i, r := range rs {
			if q := defaultQueue(t, r.HTTPURL); !q.Paused || q.Ready != n || q.Prefetched+q.Running+q.Succeeded != 0 {
				t.Fatalf("paused through r1, r%d sees %+v; want paused with all %d ready", i+1, q, n)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, err := call(context.Background(), apiClient, http.MethodPost, rs[2].AdminURL+"/admin/queues/default/resume", "", nil, nil); err != nil || code != http.StatusOK {
		t.Fatalf("resume through r3: %d %v", code, err)
	}
	waitQueue(t, rs[0].HTTPURL, fmt.Sprintf("%d succeeded after the resume", n), 15*time.Second, func(q queueCounts) bool { return q.Succeeded == n })
	ran := map[string]int{}
	for _, j := range listReplicaJobs(t, rs[0].HTTPURL, "succeeded") {
		ran[strings.Join(j.AttemptedBy, ",")]++
	}
	for _, name := range []string{"r1", "r2", "r3"} {
		if ran[name] == 0 {
			t.Errorf("after the resume through r3, %s ran none of the %d jobs: ran per node %v", name, n, ran)
		}
	}
	t.Logf("%d unique keys each posted to two replicas at once: one job each; after the resume ran per node %v", keys, ran)
}
