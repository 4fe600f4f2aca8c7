package e2e

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestSIGTERMDrainsInFlight: requests in flight when SIGTERM arrives complete with 200, readiness
// turns 503 at once, new connections are refused once the listener closes, and the exit status is 0.
func TestSIGTERMDrainsInFlight(t *testing.T) {
	// Serial: readiness must turn within 2 s of SIGTERM while 1.5 s requests are in flight.
	p := startTandem(t, "TANDEM_STORE_PATH="+filepath.Join(t.TempDir(), "db"), "TANDEM_SERVER_DEMO_ROUTES=true", "TANDEM_SERVER_THREADS=8")
	hc := &http.Client{Timeout: 20 * time.Second}
	var wg sync.WaitGroup
	codes := make(chan int, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, err := call(context.Background(), hc, http.MethodGet, p.HTTPURL+"/demo/io?ms=1500", "", nil, nil)
			if err != nil {
				t.Errorf("in-flight request failed: %v", err)
			}
			codes <- code
		}()
	}
	// Wait until the four requests hold threads.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var pools map[string]struct{ Running int }
		if _, err := call(context.Background(), hc, http.MethodGet, p.AdminURL+"/admin/pools", "", nil, &pools); err == nil && pools["http"].Running == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("requests never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.Signal(syscall.SIGTERM)
	// Readiness flips at once (the listener may already refuse connections: both mean "not ready").
	deadline = time.Now().Add(2 * time.Second)
	for {
		code, err := call(context.Background(), &http.Client{Timeout: time.Second}, http.MethodGet, p.HTTPURL+"/readyz", "", nil, nil)
		if err != nil || code == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d after SIGTERM", code)
		}
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Errorf("in-flight request answered %d, want 200", c)
		}
	}
	if code := p.Wait(30 * time.Second); code != 0 {
		t.Fatalf("exit status %d, want 0", code)
	}
	if _, err := call(context.Background(), &http.Client{Timeout: time.Second}, http.MethodGet, p.HTTPURL+"/healthz", "", nil, nil); err == nil {
		t.Fatal("a new connection was accepted after shutdown")
	}
	if !strings.Contains(p.Logs(), `"msg":"tandem stopped"`) {
		t.Errorf("no clean stop logged")
	}
}

// TestSIGHUPReload: SIGHUP re-reads config.yaml; pool sizes, backlog and log level change live and
// are logged; other changed keys are reported as needing a restart; a broken file changes nothing.
func TestSIGHUPReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	writeFile(t, cfgPath, "server:\n  threads: 3\n  backlog: 20\njobs:\n  concurrency: 2\n")
	p := startTandemNoWait(t, func(c *exec.Cmd) { c.Dir = dir }, "TANDEM_STORE_PATH="+filepath.Join(dir, "db"))
	p.WaitStarted()
	poolsNow := func() map[string]struct{ Size, Backlog int } {
		var out map[string]struct{ Size, Backlog int }
		if _, err := call(context.Background(), http.DefaultClient, "GET", p.AdminURL+"/admin/pools", "", nil, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if ps := poolsNow(); ps["http"].Size != 3 || ps["http"].Backlog != 20 || ps["jobs"].Size != 2 {
		t.Fatalf("start: %+v", ps)
	}
	writeFile(t, cfgPath, "server:\n  threads: 7\n  backlog: 40\n  read_timeout: 9s\njobs:\n  concurrency: 4\nlog:\n  level: debug\n")
	p.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ps := poolsNow()
		if ps["http"].Size == 7 && ps["http"].Backlog == 40 && ps["jobs"].Size == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after SIGHUP: %+v", ps)
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitLog := func(want string) {
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(p.Logs(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("log lacks %s:\n%s", want, p.Logs())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitLog(`"msg":"reload: applied","key":"server.threads","old":3,"new":7`)
	waitLog(`"msg":"reload: applied","key":"log.level"`)
	waitLog(`"keys":"server.read_timeout"`)
	// A broken file: rejected, nothing changes, the process keeps serving.
	writeFile(t, cfgPath, "server:\n  threads: -1\n")
	p.Signal(syscall.SIGHUP)
	waitLog(`"msg":"reload: configuration rejected; nothing changed"`)
	if ps := poolsNow(); ps["http"].Size != 7 {
		t.Fatalf("a rejected reload changed the pool: %+v", ps)
	}
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestResizesGoThroughOneDoor: a SIGHUP and the admin API resize the autoscaled jobs pool the same
// way: each pins it against its autoscaler, writes one "pool resized" line saying who, and counts in
// tandem_pool_resizes_total by source.
func TestResizesGoThroughOneDoor(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	writeFile(t, cfgPath, "jobs:\n  concurrency: 2\n  autoscale: {min: 1, max: 8}\n")
	p := startTandemNoWait(t, func(c *exec.Cmd) { c.Dir = dir }, "TANDEM_STORE_PATH="+filepath.Join(dir, "db"))
	p.WaitStarted()
	type poolView struct {
		Size              int
		Pinned, Autoscale bool
	}
	jobsPool := func() poolView {
		var out map[string]poolView
		if _, err := call(context.Background(), http.DefaultClient, "GET", p.AdminURL+"/admin/pools", "", nil, &out); err != nil {
			t.Fatal(err)
		}
		return out["jobs"]
	}
	waitFor := func(what string, cond func() bool) {
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: never; jobs pool %+v\n%s", what, jobsPool(), p.Logs())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if j := jobsPool(); !j.Autoscale || j.Pinned {
		t.Fatalf("start: %+v; want autoscaled, not pinned", j)
	}
	writeFile(t, cfgPath, "jobs:\n  concurrency: 5\n  autoscale: {min: 1, max: 8}\n")
	p.Signal(syscall.SIGHUP)
	waitFor("reload pins the pool at 5", func() bool { j := jobsPool(); return j.Size == 5 && j.Pinned })
	waitFor("the reload's audit line", func() bool {
		return strings.Contains(p.Logs(), `"msg":"pool resized","pool":"jobs","old":2,"new":5,"by":"reload","pinned":true`)
	})
	if code, err := call(context.Background(), http.DefaultClient, "DELETE", p.AdminURL+"/admin/pools/jobs/pin", "", nil, nil); err != nil || code != http.StatusOK {
		t.Fatalf("unpin: %d %v", code, err)
	}
	if code, err := call(context.Background(), http.DefaultClient, "PUT", p.AdminURL+"/admin/pools/jobs", "", map[string]any{"size": 3}, nil); err != nil || code != http.StatusOK {
		t.Fatalf("resize: %d %v", code, err)
	}
	if j := jobsPool(); j.Size != 3 || !j.Pinned {
		t.Fatalf("after the admin resize: %+v; want 3 and pinned", j)
	}
	waitFor("the admin's audit line", func() bool {
		return strings.Contains(p.Logs(), `"msg":"pool resized","pool":"jobs","old":5,"new":3,"by":"admin","pinned":true,"remote":`)
	})
	resp, err := http.Get(p.AdminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`tandem_pool_resizes_total{by="reload",direction="up",pool="jobs"} 1`,
		`tandem_pool_resizes_total{by="admin",direction="down",pool="jobs"} 1`, `tandem_pool_pinned{pool="jobs"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
