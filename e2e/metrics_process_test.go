package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func scrape(t *testing.T, url, token string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/metrics", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

// value returns the sum of a family's samples whose labels contain every given label pair.
func value(text, family string, labels ...string) float64 {
	sum := 0.0
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(family) + `(\{[^}]*\})? (\S+)$`)
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(m[1], l)
		}
		if ok {
			v, _ := strconv.ParseFloat(m[2], 64)
			sum += v
		}
	}
	return sum
}

// TestMetricsEndpoint scrapes the real /metrics, checks the families exist, are valid for promtool,
// and move under load; and that the token is needed only with admin.metrics_auth.
func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	p := startTandem(t, "TANDEM_STORE_PATH="+filepath.Join(t.TempDir(), "db"), "TANDEM_SERVER_DEMO_ROUTES=true",
		"TANDEM_ADMIN_TOKEN=tok", "TANDEM_SERVER_THREADS=1", "TANDEM_SERVER_BACKLOG=0")
	before := scrape(t, p.AdminURL, "") // public by default
	for _, fam := range []string{"tandem_pool_size", "tandem_pool_running", "tandem_pool_waiting", "tandem_pool_rejected_total",
		"tandem_queue_ready_jobs", "tandem_queue_jobs", "tandem_queue_oldest_ready_age_seconds", "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(before, "\n"+fam) && !strings.HasPrefix(before, fam) {
			t.Errorf("family %s missing", fam)
		}
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	for range 20 {
		if _, err := call(context.Background(), hc, "POST", p.HTTPURL+"/v1/jobs", "", map[string]any{"kind": "noop"}, nil); err != nil {
			t.Fatal(err)
		}
		_, _ = call(context.Background(), hc, "GET", p.HTTPURL+"/demo/hello", "", nil, nil)
	}
	// Shed some: one thread, no backlog, slow requests in parallel.
	done := make(chan struct{})
	for range 8 {
		go func() {
			_, _ = call(context.Background(), hc, "GET", p.HTTPURL+"/demo/io?ms=300", "", nil, nil)
			done <- struct{}{}
		}()
	}
	for range 8 {
		<-done
	}
	deadline := time.Now().Add(10 * time.Second)
	var after string
	for {
		after = scrape(t, p.AdminURL, "")
		if value(after, "tandem_jobs_finished_total", `state="succeeded"`) >= 20 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	checks := []struct {
		family string
		labels []string
		min    float64
	}{
		{"tandem_http_requests_total", []string{`route="/demo/hello"`, `code="200"`}, 20},
		{"tandem_http_requests_total", []string{`route="/v1/jobs"`, `method="POST"`, `code="201"`}, 20},
		{"tandem_http_request_duration_seconds_count", []string{`route="/demo/hello"`}, 20},
		{"tandem_http_shed_total", nil, 1},
		{"tandem_pool_rejected_total", []string{`pool="http"`}, 1},
		{"tandem_jobs_enqueued_total", []string{`queue="default"`, `kind="noop"`}, 20},
		{"tandem_jobs_started_total", []string{`kind="noop"`}, 20},
		{"tandem_jobs_finished_total", []string{`state="succeeded"`}, 20},
		{"tandem_job_run_seconds_count", []string{`kind="noop"`}, 20},
		{"tandem_job_queue_wait_seconds_count", []string{`queue="default"`}, 20},
		{"tandem_store_commit_seconds_count", nil, 1},
		{"tandem_store_commit_requests_sum", nil, 60},
		{"tandem_queue_jobs", []string{`state="succeeded"`}, 20},
	}
	for _, c := range checks {
		if got := value(after, c.family, c.labels...); got < c.min {
			t.Errorf("%s%v = %v, want >= %v", c.family, c.labels, got, c.min)
		}
	}
	if strings.Contains(after, `route="/demo/io?`) || strings.Contains(after, `route="/v1/jobs/0`) {
		t.Error("a raw path leaked into the route label")
	}
	if promtool, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(after)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	} else if os.Getenv("CI") != "" {
		t.Error("promtool missing in CI (.ci/run installs the prometheus package)")
	}
	// With metrics_auth the token is required.
	p2 := startTandem(t, "TANDEM_STORE_PATH="+filepath.Join(t.TempDir(), "db"), "TANDEM_ADMIN_TOKEN=tok", "TANDEM_ADMIN_METRICS_AUTH=true")
	resp, err := http.Get(p2.AdminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("metrics_auth: /metrics without token answered %d", resp.StatusCode)
	}
	scrape(t, p2.AdminURL, "tok")
}
