package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// resizeLoad is a light, bounded request and job load, and what failed in it.
type resizeLoad struct {
	requests, jobs int
	failures       []string
}

// runResizeLoad sends GET /demo/hello and, every 10th request, enqueues a 5 ms sleep job, one
// at a time, until stop is closed, at most 20,000 requests or 60 s.
func runResizeLoad(p *proc, stop <-chan struct{}) *resizeLoad {
	l := &resizeLoad{}
	c := &http.Client{Timeout: 10 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < 20000 && time.Now().Before(deadline); i++ {
		select {
		case <-stop:
			return l
		default:
		}
		if code, err := call(context.Background(), c, "GET", p.HTTPURL+"/demo/hello", "", nil, nil); err != nil || code != http.StatusOK {
			l.failures = append(l.failures, fmt.Sprintf("GET /demo/hello: %d %v", code, err))
		}
		l.requests++
		if i%10 == 0 {
			body := map[string]any{"kind": "sleep", "payload": map[string]any{"ms": 5}}
			if code, err := call(context.Background(), c, "POST", p.HTTPURL+"/v1/jobs", "", body, nil); err != nil || code != http.StatusCreated {
				l.failures = append(l.failures, fmt.Sprintf("POST /v1/jobs: %d %v", code, err))
			} else {
				l.jobs++
			}
		}
	}
	return l
}

// TestBinaryFollowsCgroupV1Resize: tandem starts in a real cgroup v1 with a quota of 2 CPUs and
// a 512 MiB memory limit; the quota goes to 1 CPU (and the memory limit to 768 MiB), then back to
// 2, while a light load of requests and jobs runs. Each time GOMAXPROCS, threads and concurrency
// follow within 10 s (/admin/runtime, /admin/pools), every derived number says where it came
// from, and no request or job fails. Then threads set through the admin API stay as set when the
// quota drops again.
func TestBinaryFollowsCgroupV1Resize(t *testing.T) {
	t.Parallel()
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs: a quota of 2 on 1 CPU changes nothing")
	}
	cpu := cgroupV1(t, "cpu", map[string]string{"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "200000"})
	mem := cgroupV1(t, "memory", map[string]string{"memory.limit_in_bytes": "536870912"})
	p := startTandemNoWait(t, func(cmd *exec.Cmd) {
		cmd.Args = []string{"/bin/sh", "-c", `echo $$ > "$1/cgroup.procs" && echo $$ > "$2/cgroup.procs" && exec "$3" serve`, "sh", cpu, mem, tandemBin}
		cmd.Path = "/bin/sh"
	}, "TANDEM_STORE_PATH="+filepath.Join(t.TempDir(), "db"), "TANDEM_SERVER_DEMO_ROUTES=true",
		"TANDEM_RUNTIME_WATCH_INTERVAL=500ms")
	p.WaitStarted()
	if p.Started["cpu_quota"] != float64(2) {
		t.Fatalf("start line: cpu_quota %v, want 2 (the cgroup's)", p.Started["cpu_quota"])
	}

	type state struct {
		gomaxprocs, threads, concurrency int
		gomemlimit                       int64
		source, memSource                string
		sizeSources                      [2]string
		changes                          int
	}
	read := func() (state, error) {
		var rt struct {
			GOMAXPROCS       int    `json:"gomaxprocs"`
			GOMAXPROCSSource string `json:"gomaxprocs_source"`
			GOMEMLIMIT       int64  `json:"gomemlimit"`
			GOMEMLIMITSource string `json:"gomemlimit_source"`
			Changes          int    `json:"limits_changes"`
		}
		var pools map[string]struct {
			Size       int    `json:"size"`
			SizeSource string `json:"size_source"`
		}
		if _, err := call(context.Background(), http.DefaultClient, "GET", p.AdminURL+"/admin/runtime", "", nil, &rt); err != nil {
			return state{}, err
		}
		if _, err := call(context.Background(), http.DefaultClient, "GET", p.AdminURL+"/admin/pools", "", nil, &pools); err != nil {
			return state{}, err
		}
		return state{rt.GOMAXPROCS, pools["http"].Size, pools["jobs"].Size, rt.GOMEMLIMIT, rt.GOMAXPROCSSource, rt.GOMEMLIMITSource,
			[2]string{pools["http"].SizeSource, pools["jobs"].SizeSource}, rt.Changes}, nil
	}
	// await waits up to 10 s for want (changes at least want.changes).
	await := func(step string, want state) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		var got state
		var err error
		for time.Now().Before(deadline) {
			if got, err = read(); err == nil && got.changes >= want.changes {
				got.changes = want.changes
				if got == want {
					t.Logf("%s: %+v", step, got)
					return
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("%s: not followed within 10 s: got %+v (err %v), want %+v", step, got, err, want)
	}
	write := func(dir, file, v string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, file), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The machine may have more CPUs than 2; the quota caps it at 2 either way.
	await("start, quota 2 CPUs", state{2, 5, 2, 483183820, sourceFor(2), "cgroup", [2]string{"auto", "auto"}, 0})

	stop := make(chan struct{})
	var load *resizeLoad
	var wg sync.WaitGroup
	wg.Go(func() { load = runResizeLoad(p, stop) })
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad() // the load ends before a t.Fatal leaves the test

	time.Sleep(300 * time.Millisecond) // let the load run at the old size first

	write(cpu, "cpu.cfs_quota_us", "100000")
	write(mem, "memory.limit_in_bytes", "805306368")
	await("quota 1 CPU, memory 768 MiB", state{1, 3, 1, 724775731, "cgroup", "cgroup", [2]string{"limits", "limits"}, 1})
	time.Sleep(300 * time.Millisecond)

	write(cpu, "cpu.cfs_quota_us", "200000")
	await("quota 2 CPUs again", state{2, 5, 2, 724775731, sourceFor(2), "cgroup", [2]string{"limits", "limits"}, 2})
	time.Sleep(300 * time.Millisecond)

	// An operator's size stays: the http pool set through the admin API no longer follows.
	if code, err := call(context.Background(), http.DefaultClient, "PUT", p.AdminURL+"/admin/pools/http", "", map[string]int{"size": 4}, nil); err != nil || code != http.StatusOK {
		t.Fatalf("PUT /admin/pools/http: %d %v", code, err)
	}
	write(cpu, "cpu.cfs_quota_us", "100000")
	await("admin set threads 4, quota 1 CPU", state{1, 4, 1, 724775731, "cgroup", "cgroup", [2]string{"admin", "limits"}, 3})
	stopLoad()

	if len(load.failures) > 0 {
		t.Fatalf("%d of %d requests and %d jobs failed, first: %s", len(load.failures), load.requests, load.jobs, load.failures[0])
	}
	if load.jobs == 0 {
		t.Fatal("no job was enqueued: the load did not run")
	}
	// Every job enqueued finishes, none retried or dead.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var qs struct {
			Queues []struct {
				Succeeded, Retrying, Dead int
			} `json:"queues"`
		}
		if _, err := call(context.Background(), http.DefaultClient, "GET", p.HTTPURL+"/v1/queues", "", nil, &qs); err != nil {
			t.Fatal(err)
		}
		var ok, retrying, dead int
		for _, q := range qs.Queues {
			ok, retrying, dead = ok+q.Succeeded, retrying+q.Retrying, dead+q.Dead
		}
		if retrying+dead > 0 {
			t.Fatalf("jobs failed: %d retrying, %d dead of %d", retrying, dead, load.jobs)
		}
		if ok == load.jobs {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d jobs succeeded after 30 s", ok, load.jobs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d requests and %d jobs, none failed", load.requests, load.jobs)
	if n := strings.Count(p.Logs(), `"msg":"limits changed"`); n < 3 {
		t.Errorf("%d limits changed audit lines for 3 changes", n)
	}
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// sourceFor is gomaxprocs_source under a quota of quota CPUs: cgroup when the quota is below the
// CPUs the process may run on, affinity when it is not (the quota does not limit it).
func sourceFor(quota int) string {
	if quota < runtime.NumCPU() {
		return "cgroup"
	}
	return "affinity"
}
