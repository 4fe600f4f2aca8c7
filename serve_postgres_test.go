package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
	"go.uber.org/goleak"
)

// served is a tandem serve running in this process.
type served struct {
	started     map[string]any // the "tandem started" log line
	http, admin string         // base URLs
	logs        *tandemtest.SyncBuffer
	stop        func() int // cancels serve and returns its exit status
}

// serveInProcess runs `tandem serve` with env (plus loopback ports 0) until the test ends or stop.
func serveInProcess(t *testing.T, env ...string) *served {
	t.Helper()
	procs, memLimit := runtime.GOMAXPROCS(0), debug.SetMemoryLimit(-1)
	t.Cleanup(func() { runtime.GOMAXPROCS(procs); debug.SetMemoryLimit(memLimit) }) // serve sets both
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{logs: &tandemtest.SyncBuffer{}}
	done := make(chan int, 1)
	env = append([]string{"TANDEM_SERVER_ADDR=127.0.0.1:0", "TANDEM_ADMIN_ADDR=127.0.0.1:0", "TANDEM_LOG_ACCESS=off"}, env...)
	go func() { done <- run(ctx, []string{"serve", "--config", emptyConfig(t)}, env, io.Discard, s.logs) }()
	var once sync.Once
	code := 0
	s.stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(60 * time.Second):
				t.Errorf("serve did not stop within 60s; logs:\n%s", s.logs)
				code = -1
			}
		})
		return code
	}
	t.Cleanup(func() { s.stop() })
	deadline := time.Now().Add(30 * time.Second)
	for s.started == nil {
		select {
		case code := <-done:
			done <- code
			t.Fatalf("serve exited with %d before it started:\n%s", code, s.logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start within 30s:\n%s", s.logs)
		}
		sc := bufio.NewScanner(strings.NewReader(s.logs.String()))
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == "tandem started" {
				s.started = line
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.http, s.admin = "http://"+s.started["http_addr"].(string), "http://"+s.started["admin_addr"].(string)
	return s
}

// call sends a request and decodes a JSON answer into out (when not nil).
func call(t *testing.T, method, url, body string, out any) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, url, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode, resp.Header
}

type nodesAnswer struct {
	Nodes []struct {
		Name    string `json:"name"`
		Version string `json:"version"`
		Leader  bool   `json:"leader"`
		Pools   map[string]struct {
			Size int `json:"size"`
		} `json:"pools"`
	} `json:"nodes"`
	Shared bool `json:"shared"`
}

// TestServePostgresReplicas runs two replicas of serve on one Postgres database: each says which
// store it uses without the password, both are in /admin/nodes with their pools and one leader,
// a job enqueued on one runs on a replica named in its attempted_by, and both stop cleanly,
// leaving no goroutine behind.
func TestServePostgresReplicas(t *testing.T) {
	url := withPassword(tandemtest.Postgres(t))
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // after both replicas stopped
	env := []string{"TANDEM_STORE_BACKEND=postgres", "TANDEM_STORE_URL=" + url, "TANDEM_JOBS_RESCUE_AFTER=1s",
		"TANDEM_SERVER_THREADS=5", "TANDEM_JOBS_CONCURRENCY=3"}
	a := serveInProcess(t, append(env, "TANDEM_NODE_NAME=replica-a")...)
	b := serveInProcess(t, append(env, "TANDEM_NODE_NAME=replica-b")...)
	for _, s := range []*served{a, b} {
		if s.started["store_backend"] != "postgres" || !strings.HasPrefix(s.started["store"].(string), "postgres://postgres:xxxxx@127.0.0.1:") {
			t.Errorf("start line: backend %v store %v", s.started["store_backend"], s.started["store"])
		}
	}
	if a.started["node"] != "replica-a" {
		t.Errorf("start line: node %v", a.started["node"])
	}

	var nodes nodesAnswer
	waitFor(t, "both replicas in /admin/nodes, one leading", func() bool {
		call(t, "GET", a.admin+"/admin/nodes", "", &nodes)
		leaders := 0
		for _, n := range nodes.Nodes {
			if n.Leader {
				leaders++
			}
		}
		return len(nodes.Nodes) == 2 && leaders == 1
	}, func() string { return fmt.Sprintf("%+v\nreplica-a:\n%s", nodes, a.logs) })
	if !nodes.Shared || nodes.Nodes[0].Name != "replica-a" || nodes.Nodes[1].Name != "replica-b" {
		t.Fatalf("/admin/nodes: %+v", nodes)
	}
	for _, n := range nodes.Nodes {
		if n.Version != version || n.Pools["http"].Size != 5 || n.Pools["jobs"].Size != 3 {
			t.Errorf("node %s: %+v, want version %s, http 5, jobs 3", n.Name, n, version)
		}
	}

	var job struct {
		ID          string   `json:"id"`
		State       string   `json:"state"`
		AttemptedBy []string `json:"attempted_by"`
	}
	if code, _ := call(t, "POST", b.http+"/v1/jobs", `{"kind":"noop"}`, &job); code != http.StatusCreated {
		t.Fatalf("enqueue on replica-b: %d", code)
	}
	tandemtest.WaitFor(t, "the job to succeed", func() bool {
		call(t, "GET", a.http+"/v1/jobs/"+job.ID, "", &job) // either replica sees every job
		return job.State == "succeeded"
	})
	if len(job.AttemptedBy) != 1 || (job.AttemptedBy[0] != "replica-a" && job.AttemptedBy[0] != "replica-b") {
		t.Errorf("attempted_by %q, want one of the replicas", job.AttemptedBy)
	}

	for _, s := range []*served{b, a} {
		if code := s.stop(); code != 0 {
			t.Errorf("serve exited %d:\n%s", code, s.logs)
		}
		if logs := s.logs.String(); strings.Contains(logs, testPassword) {
			t.Errorf("the logs show the password:\n%s", logs)
		}
	}
}

// TestServePostgresDown stops the database under a running serve: /readyz turns 503 with a JSON
// error and enqueues are 503 with Retry-After; once the database is back, both recover by
// themselves, with serve never restarted.
func TestServePostgresDown(t *testing.T) {
	pg := tandemtest.StartPostgres(t)
	s := serveInProcess(t, "TANDEM_STORE_BACKEND=postgres", "TANDEM_STORE_URL="+pg.NewDatabase(t), "TANDEM_JOBS_RESCUE_AFTER=1s")
	if code, _ := call(t, "GET", s.http+"/readyz", "", nil); code != http.StatusOK {
		t.Fatalf("/readyz: %d", code)
	}
	pg.Stop()
	var errBody struct {
		Error string `json:"error"`
	}
	tandemtest.WaitFor(t, "/readyz 503 with the database down", func() bool {
		req, _ := http.NewRequest("GET", s.http+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable && json.NewDecoder(resp.Body).Decode(&errBody) == nil
	})
	if !strings.Contains(errBody.Error, "job store") {
		t.Errorf("/readyz while down: %q", errBody.Error)
	}
	if code, hdr := call(t, "POST", s.http+"/v1/jobs", `{"kind":"noop"}`, nil); code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Errorf("enqueue while down: %d, Retry-After %q", code, hdr.Get("Retry-After"))
	}
	pg.Start()
	tandemtest.WaitFor(t, "/readyz 200 with the database back", func() bool {
		code, _ := call(t, "GET", s.http+"/readyz", "", nil)
		return code == http.StatusOK
	})
	var job struct{ State string }
	if code, _ := call(t, "POST", s.http+"/v1/jobs", `{"kind":"noop"}`, &job); code != http.StatusCreated {
		t.Fatalf("enqueue after the database came back: %d", code)
	}
	if code := s.stop(); code != 0 {
		t.Errorf("serve exited %d:\n%s", code, s.logs)
	}
}

// waitFor is tandemtest.WaitFor that says what it saw last when it times out.
func waitFor(t *testing.T, what string, cond func() bool, saw func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last seen: %s", what, saw())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
