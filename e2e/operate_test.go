package e2e

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type poolJSON struct {
	Size    int  `json:"size"`
	Pinned  bool `json:"pinned"`
	Running int  `json:"running"`
}

func pools(t *testing.T, p *proc, token string) map[string]poolJSON {
	t.Helper()
	var out map[string]poolJSON
	if _, err := call(context.Background(), http.DefaultClient, "GET", p.AdminURL+"/admin/pools", token, nil, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestOperateUnderLoad: while 64 clients load the server and jobs drain, the CLI resizes both pools
// and pauses and resumes the queue; no request fails other than by 503 shedding and no job is lost.
// The HTTP autoscaler grows the pool for I/O-bound requests, a manual resize pins it, and unpin
// hands it back.
func TestOperateUnderLoad(t *testing.T) {
	// Serial: 64 clients load the process and the HTTP autoscaler must see latency fall as it grows;
	// the CPU other tests take makes that latency noise.
	const token = "op-token"
	p := startTandem(t, "TANDEM_STORE_PATH="+filepath.Join(t.TempDir(), "db"), "TANDEM_SERVER_DEMO_ROUTES=true",
		"TANDEM_ADMIN_TOKEN="+token, "TANDEM_SERVER_AUTOSCALE_MIN=2", "TANDEM_SERVER_AUTOSCALE_MAX=48", "TANDEM_SERVER_THREADS=2",
		"TANDEM_JOBS_CONCURRENCY=2", "TANDEM_SERVER_QUEUE_TIMEOUT=5s")
	cli := func(args ...string) result {
		return runTandem(t, t.TempDir(), []string{"TANDEM_ADMIN_TOKEN=" + token, "TANDEM_ADMIN_URL=" + p.AdminURL, "TANDEM_SERVER_URL=" + p.HTTPURL}, args...)
	}
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	stop := make(chan struct{})
	var bad, okN atomic.Int64
	var mu sync.Mutex
	var ids []string
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 2000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if i%8 == 0 { // some clients enqueue jobs
					var j jobJSON
					code, err := call(context.Background(), hc, "POST", p.HTTPURL+"/v1/jobs", "", map[string]any{"kind": "sleep", "payload": map[string]any{"ms": 5}}, &j)
					switch {
					case err != nil:
						bad.Add(1)
					case code == 201:
						mu.Lock()
						ids = append(ids, j.ID)
						mu.Unlock()
					case code != 503:
						bad.Add(1)
					}
					continue
				}
				code, err := call(context.Background(), hc, "GET", p.HTTPURL+"/demo/io?ms=50", "", nil, nil)
				switch {
				case err != nil:
					bad.Add(1)
				case code == 200:
					okN.Add(1)
				case code != 503:
					bad.Add(1)
				}
			}
		}()
	}
	// The autoscaler grows the I/O-bound pool well past its start.
	deadline := time.Now().Add(30 * time.Second)
	for pools(t, p, token)["http"].Size < 8 {
		if time.Now().After(deadline) {
			t.Fatalf("autoscaler did not grow the http pool: %+v", pools(t, p, token))
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, args := range [][]string{
		{"pools", "resize", "jobs", "5"}, {"queues", "pause", "default"}, {"pools", "resize", "http", "6"},
		{"queues", "resume", "default"}, {"pools", "resize", "jobs", "1"}, {"pools", "resize", "jobs", "3"},
	} {
		if r := cli(args...); r.code != 0 {
			t.Fatalf("tandem %v: %+v", args, r)
		}
		time.Sleep(300 * time.Millisecond)
	}
	ps := pools(t, p, token)
	if ps["http"].Size != 6 || !ps["http"].Pinned || ps["jobs"].Size != 3 {
		t.Fatalf("after manual resizes: %+v", ps)
	}
	time.Sleep(2 * time.Second) // pinned: the autoscaler must leave it alone
	if ps := pools(t, p, token); ps["http"].Size != 6 {
		t.Fatalf("a pinned pool was resized: %+v", ps)
	}
	if r := cli("pools", "unpin", "http", "--json"); r.code != 0 || !strings.Contains(r.stdout, `"pinned": false`) {
		t.Fatalf("unpin: %+v", r)
	}
	if r := cli("pools", "resize", "http", "0"); r.code != 1 || !strings.Contains(r.stderr, "400") {
		t.Fatalf("resize to 0: %+v", r)
	}
	// Back to auto: the size derived from the CPU limit, following it again; refused for the
	// autoscaled pool, whose size is its controller's.
	if r := cli("pools", "resize", "jobs", "auto", "--json"); r.code != 0 || !strings.Contains(r.stdout, `"follows_limits": true`) || !strings.Contains(r.stdout, `"size_source": "auto"`) {
		t.Fatalf("resize jobs auto: %+v", r)
	}
	if r := cli("pools", "resize", "http", "auto"); r.code != 1 || !strings.Contains(r.stderr, "autoscaled") {
		t.Fatalf("resize http auto (autoscaled): %+v", r)
	}
	close(stop)
	wg.Wait()
	if bad.Load() != 0 || okN.Load() == 0 || len(ids) == 0 {
		t.Fatalf("%d requests failed other than by shedding (%d ok, %d jobs)", bad.Load(), okN.Load(), len(ids))
	}
	waitAllState(t, p.HTTPURL, ids, "succeeded", 60*time.Second)
	if r := cli("pools", "--json"); r.code != 0 || !strings.Contains(r.stdout, `"jobs"`) {
		t.Fatalf("tandem pools: %+v", r)
	}
	if r := cli("queues"); r.code != 0 || !strings.Contains(r.stdout, "default") {
		t.Fatalf("tandem queues: %+v", r)
	}
	if !strings.Contains(p.Logs(), `"msg":"autoscale"`) {
		t.Error("no autoscale change logged")
	}
	t.Logf("%d requests ok, %d jobs all succeeded", okN.Load(), len(ids))
}
