package e2e

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
)

// TestShutdownDelayAnswersNotReady: with server.shutdown_delay 2s, SIGTERM turns /readyz to 503
// at once while the demo route and the job API still answer; then the process drains and exits 0.
// Before, the listener closed at SIGTERM and a load balancer polling /readyz saw connection
// refused, not "going away".
func TestShutdownDelayAnswersNotReady(t *testing.T) {
	// Serial: it times readiness against a 2 s delay after SIGTERM.
	p := startTandem(t, "TANDEM_STORE_PATH="+filepath.Join(t.TempDir(), "db"), "TANDEM_SERVER_DEMO_ROUTES=true",
		"TANDEM_SERVER_SHUTDOWN_DELAY=2s")
	hc := &http.Client{Timeout: 5 * time.Second}
	get := func(path string) (int, string, error) {
		resp, err := hc.Get(p.HTTPURL + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw), nil
	}
	if code, _, err := get("/readyz"); err != nil || code != http.StatusOK {
		t.Fatalf("/readyz before SIGTERM: %d %v", code, err)
	}
	p.Signal(syscall.SIGTERM)
	tandemtest.WaitFor(t, "/readyz 503 after SIGTERM", func() bool {
		code, body, err := get("/readyz")
		if err != nil {
			t.Fatalf("/readyz after SIGTERM: %v (the listener closed before the delay)", err)
		}
		return code == http.StatusServiceUnavailable && strings.Contains(body, "shutting down")
	})
	if code, _, err := get("/demo/hello"); err != nil || code != http.StatusOK {
		t.Errorf("/demo/hello during the delay: %d %v", code, err)
	}
	if code, err := call(context.Background(), hc, http.MethodPost, p.HTTPURL+"/v1/jobs", "", map[string]any{"kind": "noop"}, nil); err != nil || code != http.StatusCreated {
		t.Errorf("enqueue during the delay: %d %v", code, err)
	}
	if code := p.Wait(30 * time.Second); code != 0 {
		t.Fatalf("exit status %d, want 0", code)
	}
	if _, _, err := get("/healthz"); err == nil {
		t.Error("a connection was accepted after the process exited")
	}
	if !strings.Contains(p.Logs(), `"msg":"tandem stopped"`) {
		t.Error("no clean stop logged")
	}
}
