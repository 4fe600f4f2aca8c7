package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
)

// nodeJSON is a node as GET /admin/nodes shows it.
type nodeJSON struct {
	Name   string `json:"name"`
	Leader bool   `json:"leader"`
}

// nodes reads GET /admin/nodes on the replica p.
func nodes(t *testing.T, p *proc) []nodeJSON {
	t.Helper()
	var out struct {
		Nodes []nodeJSON `json:"nodes"`
	}
	if code, err := call(context.Background(), apiClient, http.MethodGet, p.AdminURL+"/admin/nodes", "", nil, &out); err != nil || code != http.StatusOK {
		t.Fatalf("GET /admin/nodes: %d %v", code, err)
	}
	return out.Nodes
}

// leaderOf returns the leader's name in ns ("" when none) and every name.
func leaderOf(ns []nodeJSON) (leader string, names []string) {
	for _, n := range ns {
		names = append(names, n.Name)
		if n.Leader {
			leader = n.Name
		}
	}
	return leader, names
}

// waitNodes polls GET /admin/nodes on p until ok holds for the leader and the names, or fails after d.
func waitNodes(t *testing.T, p *proc, what string, d time.Duration, ok func(leader string, names []string) bool) (string, []string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		leader, names := leaderOf(nodes(t, p))
		if ok(leader, names) {
			return leader, names
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s GET /admin/nodes shows nodes %v, leader %q; want %s", d, names, leader, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestKilledReplicasJobsAreRescued: kill -9 of the replica that leads and runs six jobs that never
// end while it lives; the other two replicas take the leadership and rescue the jobs within
// rescue_after plus a margin. Each job then succeeds at attempt 2, its errors record the
// interrupted attempt 1, and attempted_by names the dead node and its rescuer.
func TestKilledReplicasJobsAreRescued(t *testing.T) {
	// Serial: it kills a process and times the rescue in seconds; a loaded machine would stretch it.
	if testing.Short() {
		t.Skip("crash test runs real processes")
	}
	const rescueAfter = 3 * time.Second
	db := tandemtest.Postgres(t)
	env := []string{"TANDEM_JOBS_RESCUE_AFTER=" + rescueAfter.String(), "TANDEM_JOBS_CONCURRENCY=8", "TANDEM_JOBS_EXEC_ALLOW=/bin/sh"}
	r1 := startReplicas(t, db, []string{"r1"}, env...)[0]
	// A job's first run leaves a mark and then runs for as long as its replica lives (the shell
	// polls its parent, so it ends with it instead of outliving the test); a run that finds the mark
	// succeeds at once. So a job succeeds only if another replica runs it again.
	dir := t.TempDir()
	const n = 6
	var ids []string
	for i := range n {
		mark := filepath.Join(dir, fmt.Sprint(i))
		ids = append(ids, enqueueOne(t, r1.HTTPURL, map[string]any{"kind": "exec", "payload": map[string]any{
			"argv": []string{"/bin/sh", "-c", `[ -e "$M" ] && exit 0; : > "$M"; while kill -0 $PPID 2>/dev/null; do sleep 0.05; done; exit 1`},
			"env":  map[string]string{"M": mark},
		}}))
	}
	waitQueue(t, r1.HTTPURL, fmt.Sprintf("%d running", n), 20*time.Second, func(q queueCounts) bool { return q.Running == n })
	rs := startReplicas(t, db, []string{"r2", "r3"}, env...)
	if leader, names := waitNodes(t, rs[0], "r1, r2, r3", 10*time.Second, func(_ string, names []string) bool {
		return slices.Equal(names, []string{"r1", "r2", "r3"})
	}); leader != "r1" {
		t.Fatalf("leader %q of %v; r1 started first and leads", leader, names)
	}
	for _, id := range ids {
		if j := getReplicaJob(t, rs[0].HTTPURL, id); j.State != "running" || !slices.Equal(j.AttemptedBy, []string{"r1"}) {
			t.Fatalf("job %s before the kill: %s, attempted by %v; want running on r1", id, j.State, j.AttemptedBy)
		}
	}

	r1.Kill9()
	killed := time.Now()
	leader, _ := waitNodes(t, rs[1], "r2 or r3 leading", rescueAfter+5*time.Second, func(leader string, _ []string) bool {
		return leader == "r2" || leader == "r3"
	})
	failover := time.Since(killed)
	margin := 5 * time.Second // a heartbeat for the leadership to move, one for the rescue, the rerun, -race
	waitQueue(t, rs[0].HTTPURL, fmt.Sprintf("%d succeeded", n), rescueAfter+margin, func(q queueCounts) bool { return q.Succeeded == n })
	rescued := time.Since(killed)
	for _, id := range ids {
		j := getReplicaJob(t, rs[1].HTTPURL, id)
		if j.State != "succeeded" || j.Attempt != 2 || len(j.AttemptedBy) != 2 || j.AttemptedBy[0] != "r1" || !slices.Contains([]string{"r2", "r3"}, j.AttemptedBy[1]) {
			t.Errorf("job %s: %s at attempt %d, attempted by %v; want succeeded at attempt 2 by r1 then r2 or r3", id, j.State, j.Attempt, j.AttemptedBy)
		}
		if len(j.Errors) != 1 || j.Errors[0].Attempt != 1 || !strings.HasPrefix(j.Errors[0].Error, "interrupted") {
			t.Errorf("job %s: errors %+v; want attempt 1's interruption", id, j.Errors)
		}
	}
	// r1's heartbeat ages out of the list.
	_, names := waitNodes(t, rs[0], "r2 and r3 only", 10*time.Second, func(_ string, names []string) bool {
		return slices.Equal(names, []string{"r2", "r3"})
	})
	t.Logf("kill -9 of leader r1: %s leads after %s, %d jobs rescued and succeeded %s after the kill (rescue_after %s); nodes now %v",
		leader, failover.Round(time.Millisecond), n, rescued.Round(time.Millisecond), rescueAfter, names)
}

// outcome is what one enqueue got during TestPostgresOutage.
type outcome struct {
	replica        int
	sent, answered time.Time
	code           int
	retryAfter     string
	id             string
	err            error
}

// postJob sends one enqueue and reports what came back, headers included.
func postJob(hc *http.Client, base string, body map[string]any) outcome {
	o := outcome{sent: time.Now()}
	b, _ := json.Marshal(body)
	resp, err := hc.Post(base+"/v1/jobs", "application/json", bytes.NewReader(b))
	if err != nil {
		o.err, o.answered = err, time.Now()
		return o
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	o.answered, o.code, o.retryAfter = time.Now(), resp.StatusCode, resp.Header.Get("Retry-After")
	if o.code == http.StatusCreated {
		var j replicaJob
		if err := json.Unmarshal(raw, &j); err != nil || j.ID == "" {
			o.err = fmt.Errorf("201 with body %s: %v", raw, err)
		}
		o.id = j.ID
	} else if o.code != http.StatusServiceUnavailable {
		o.err = fmt.Errorf("answered %d: %s", o.code, raw)
	}
	return o
}

// TestPostgresOutage: the database stops for 5 s under load and starts again. Through it, an
// enqueue is answered 201 only when the job is stored (each one exists afterwards and succeeds),
// or 503 with Retry-After; /readyz turns 503 and back to 200; enqueues resume by themselves,
// with neither replica restarted.
func TestPostgresOutage(t *testing.T) {
	// Serial: it stops a Postgres server for 5 s and checks what happened in that window.
	if testing.Short() {
		t.Skip("stops a Postgres server")
	}
	srv := tandemtest.StartPostgres(t)
	db := srv.NewDatabase(t)
	rs := startReplicas(t, db, []string{"r1", "r2"}, "TANDEM_JOBS_RESCUE_AFTER=3s", "TANDEM_JOBS_CONCURRENCY=4")

	// Readiness of each replica, polled every 50 ms.
	type probe struct {
		at   time.Time
		code int // 0: no answer
	}
	var mu sync.Mutex
	probes := make([][]probe, len(rs))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Go(func() {
			hc := &http.Client{Timeout: 2 * time.Second}
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				code, _ := call(context.Background(), hc, http.MethodGet, r.HTTPURL+"/readyz", "", nil, nil)
				mu.Lock()
				probes[i] = append(probes[i], probe{time.Now(), code})
				mu.Unlock()
			}
		})
	}
	// The load: 4 clients, round-robin over the replicas, 10 ms apart.
	var outcomes []outcome
	for c := range 4 {
		wg.Go(func() {
			hc := &http.Client{Timeout: 8 * time.Second}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				r := (c + i) % len(rs)
				o := postJob(hc, rs[r].HTTPURL, map[string]any{"kind": "sleep", "payload": map[string]any{"ms": 10}})
				o.replica = r
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
			}
		})
	}
	time.Sleep(1500 * time.Millisecond)
	srv.Stop()
	down := time.Now()
	time.Sleep(5 * time.Second)
	up := time.Now()
	srv.Start()
	restarted := time.Now()
	// Enqueues resume: each replica acknowledges one sent after the restart, within 15 s.
	deadline := restarted.Add(15 * time.Second)
	for {
		mu.Lock()
		resumed := map[int]bool{}
		for _, o := range outcomes {
			if o.code == http.StatusCreated && o.sent.After(restarted) {
				resumed[o.replica] = true
			}
		}
		n := len(resumed)
		mu.Unlock()
		if n == len(rs) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // a second of load after the recovery
	close(stop)
	wg.Wait()

	var ids []string
	var during, unavailable, noRetryAfter int
	after := map[int]int{} // acknowledged after the restart, by replica
	for _, o := range outcomes {
		switch {
		case o.err != nil && o.code == 0:
			t.Errorf("enqueue sent %s after the stop got no answer: %v", o.sent.Sub(down).Round(time.Millisecond), o.err)
		case o.err != nil:
			t.Errorf("enqueue sent %s after the stop: %v", o.sent.Sub(down).Round(time.Millisecond), o.err)
		case o.code == http.StatusCreated:
			ids = append(ids, o.id)
			if o.sent.After(down) && o.answered.Before(up) {
				during++
			}
			if o.sent.After(restarted) {
				after[o.replica]++
			}
		default: // 503
			unavailable++
			if o.retryAfter == "" {
				noRetryAfter++
			}
		}
	}
	if during > 0 {
		t.Errorf("%d enqueues sent and answered 201 while Postgres was down", during)
	}
	if unavailable == 0 {
		t.Errorf("no enqueue was answered 503 during the outage")
	}
	if noRetryAfter > 0 {
		t.Errorf("%d of %d 503s had no Retry-After", noRetryAfter, unavailable)
	}
	if len(after) != len(rs) {
		t.Errorf("enqueues sent after Postgres restarted acknowledged per replica: %v; want some on each", after)
	}
	for i := range rs {
		var sawDown, sawUp bool
		var last probe
		for _, p := range probes[i] {
			if p.at.After(down) && p.at.Before(up) && p.code == http.StatusServiceUnavailable {
				sawDown = true
			}
			if sawDown && p.at.After(restarted) && p.code == http.StatusOK {
				sawUp = true
			}
			last = p
		}
		if !sawDown || !sawUp || last.code != http.StatusOK {
			t.Errorf("r%d /readyz: 503 during the outage %v, 200 after it %v, last %d", i+1, sawDown, sawUp, last.code)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	waitSucceeded(t, rs, ids, 30*time.Second)
	// A job that ran while the database was away is acknowledged once it is back (the runtime
	// retries the write and renews the lease meanwhile), not rescued and run again.
	var rerun []replicaJob
	for _, j := range listReplicaJobs(t, rs[0].HTTPURL, "succeeded") {
		if len(j.Errors) > 0 {
			rerun = append(rerun, j)
		}
	}
	if len(rerun) > 0 {
		t.Errorf("%d jobs ran again after the outage, e.g. %+v", len(rerun), rerun[0])
	}
	for _, r := range rs {
		if code, err := call(context.Background(), apiClient, http.MethodGet, r.HTTPURL+"/healthz", "", nil, nil); err != nil || code != http.StatusOK {
			t.Errorf("after the outage /healthz: %d %v", code, err)
		}
	}
	t.Logf("Postgres down %s: %d enqueues acknowledged (after the restart, per replica: %v), all stored and succeeded; %d answered 503, all with Retry-After; readiness off and back on both replicas",
		up.Sub(down).Round(time.Millisecond), len(ids), after, unavailable)
}

// waitSucceeded polls the jobs through the replicas until every one has succeeded, or fails after
// d with what the rest are doing: their states, the queue and the nodes as each replica sees them.
func waitSucceeded(t *testing.T, rs []*proc, ids []string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	pending := ids
	for len(pending) > 0 {
		var still []string
		states := map[string]int{}
		for _, id := range pending {
			var j replicaJob
			code, err := call(context.Background(), apiClient, http.MethodGet, rs[0].HTTPURL+"/v1/jobs/"+id, "", nil, &j)
			switch {
			case err != nil || code == http.StatusServiceUnavailable:
				still = append(still, id) // the store may still be coming back
				states[fmt.Sprint(code, err)]++
			case code == http.StatusNotFound:
				t.Fatalf("acknowledged job %s is missing", id)
			case code != http.StatusOK:
				t.Fatalf("get %s: %d", id, code)
			case j.State != "succeeded":
				still = append(still, id)
				states[j.State]++
			}
		}
		if pending = still; len(pending) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for i, r := range rs {
				leader, names := leaderOf(nodes(t, r))
				t.Logf("r%d sees the queue %+v, nodes %v, leader %q", i+1, defaultQueue(t, r.HTTPURL), names, leader)
			}
			j := getReplicaJob(t, rs[0].HTTPURL, pending[0])
			// SIGQUIT makes each replica print its goroutines' stacks into its logs, which the
			// failed test shows: where the dispatchers wait.
			for _, r := range rs {
				r.Signal(syscall.SIGQUIT)
				r.Wait(10 * time.Second)
			}
			t.Fatalf("%d of %d acknowledged jobs not succeeded after %s: %v; e.g. %+v", len(pending), len(ids), d, states, j)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
