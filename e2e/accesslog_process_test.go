package e2e

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
)

// TestAccessLogDefaultsToErrors: at the default log.access (errors), successful requests, probes
// and the dashboard's polling write no access line, while a 404 does, with its duration as a
// number of milliseconds; SIGHUP switches to all live. Before, every request was an INFO line.
func TestAccessLogDefaultsToErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	writeFile(t, cfg, "server:\n  demo_routes: true\n")
	p := startTandemNoWait(t, func(c *exec.Cmd) { c.Dir = dir }, "TANDEM_STORE_PATH="+filepath.Join(dir, "db"))
	p.WaitStarted()
	hc := &http.Client{Timeout: 5 * time.Second}
	hit := func(url string) {
		resp, err := hc.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	requestLines := func() []map[string]any {
		var out []map[string]any
		for _, line := range strings.Split(p.Logs(), "\n") {
			if strings.Contains(line, `"msg":"request"`) {
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatalf("%q: %v", line, err)
				}
				out = append(out, m)
			}
		}
		return out
	}
	for range 10 {
		hit(p.HTTPURL + "/demo/hello")
		hit(p.HTTPURL + "/healthz")
		hit(p.HTTPURL + "/readyz")
		hit(p.AdminURL + "/admin/api/v1/jobs")
		hit(p.AdminURL + "/admin/pools")
		hit(p.AdminURL + "/metrics")
	}
	hit(p.HTTPURL + "/no-such-route")
	tandemtest.WaitFor(t, "the 404's access line", func() bool { return len(requestLines()) > 0 })
	lines := requestLines()
	if len(lines) != 1 || lines[0]["status"] != float64(404) || lines[0]["path"] != "/no-such-route" {
		t.Fatalf("access lines at the default, want only the 404's: %v", lines)
	}
	if _, ok := lines[0]["duration_ms"].(float64); !ok {
		t.Errorf("duration_ms is not a number: %v", lines[0])
	}
	// SIGHUP applies log.access live.
	writeFile(t, cfg, "server:\n  demo_routes: true\nlog:\n  access: all\n")
	p.Signal(syscall.SIGHUP)
	tandemtest.WaitFor(t, "log.access applied", func() bool {
		return strings.Contains(p.Logs(), `"msg":"reload: applied","key":"log.access"`)
	})
	hit(p.HTTPURL + "/demo/hello")
	tandemtest.WaitFor(t, "a 200's access line under all", func() bool { return len(requestLines()) == 2 })
	if l := requestLines()[1]; l["route"] != "/demo/hello" || l["status"] != float64(200) {
		t.Errorf("under all: %v", l)
	}
}

// TestBadAccessLogValue: a bad log.access stops the start with exit 2 and names the key.
func TestBadAccessLogValue(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := runTandem(t, dir, []string{"TANDEM_LOG_ACCESS=some", "TANDEM_STORE_PATH=" + filepath.Join(dir, "db")}, "serve")
	if r.code != 2 || !strings.Contains(r.stderr, "log.access") || !strings.Contains(r.stderr, "all, errors, off") {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
}
