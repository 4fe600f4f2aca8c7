package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
)

// TestDiskFullAnswers503AndRecovers: a real tandem whose database sits on a small tmpfs. Once the
// filesystem is full, POST /v1/jobs answers 503 with Retry-After and a JSON error that names
// neither the database's path nor the OS error, but a request id whose log line has both; every
// job answered 201 before is still there; when space returns, enqueues succeed again without a
// restart; and after a restart every acknowledged job is still there.
func TestDiskFullAnswers503AndRecovers(t *testing.T) {
	// Serial: it fills a filesystem (its own tmpfs) and gives recovery 10 s once space returns.
	dir := tandemtest.Tmpfs(t, "4m")
	env := []string{"TANDEM_STORE_PATH=" + filepath.Join(dir, "tandem.db")}
	p := startTandem(t, env...)
	ctx := context.Background()
	hc := &http.Client{Timeout: 10 * time.Second}
	// Scheduled an hour ahead, so the jobs stay in the store while the test looks at them.
	job := func(payloadBytes int) map[string]any {
		return map[string]any{"kind": "noop", "delay": "1h", "payload": map[string]string{"pad": strings.Repeat("x", payloadBytes)}}
	}
	acked := enqueueMany(ctx, t, p.HTTPURL, 50, 4, job(10), nil)
	if len(acked) != 50 {
		t.Fatalf("%d of 50 enqueues before filling the disk succeeded", len(acked))
	}

	filler := tandemtest.FillDisk(t, dir)

	// Enqueue until the store can no longer grow: 503, Retry-After, a JSON error, nothing lost.
	var refused bool
	for i := 0; i < 2000 && !refused; i++ {
		body, _ := json.Marshal(job(3000))
		resp, err := hc.Post(p.HTTPURL+"/v1/jobs", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			ID, Error string
			RequestID string `json:"request_id"`
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("status %d without a JSON body: %v", resp.StatusCode, err)
		}
		switch resp.StatusCode {
		case http.StatusCreated:
			acked = append(acked, out.ID)
		case http.StatusServiceUnavailable:
			refused = true
			if resp.Header.Get("Retry-After") == "" || strings.Contains(out.Error, dir) || strings.Contains(out.Error, "no space left") ||
				out.RequestID == "" || out.RequestID != resp.Header.Get("X-Request-Id") {
				t.Fatalf("503 on a full disk: Retry-After %q, X-Request-Id %q, body %+v; want Retry-After, the request id and no path or OS error",
					resp.Header.Get("Retry-After"), resp.Header.Get("X-Request-Id"), out)
			}
			tandemtest.WaitFor(t, "the log line of request "+out.RequestID+" with the detail", func() bool {
				for _, line := range strings.Split(p.Logs(), "\n") {
					if strings.Contains(line, out.RequestID) && strings.Contains(line, "no space left") && strings.Contains(line, dir) {
						return true
					}
				}
				return false
			})
		default:
			t.Fatalf("enqueue on a full disk: status %d, error %q", resp.StatusCode, out.Error)
		}
	}
	if !refused {
		t.Fatal("2,000 enqueues of 3 KB fitted on a full 4 MB filesystem")
	}
	checkPresent := func(when string) {
		t.Helper()
		for _, id := range acked {
			var j jobJSON
			if code, err := call(ctx, hc, http.MethodGet, p.HTTPURL+"/v1/jobs/"+id, "", nil, &j); err != nil || code != http.StatusOK {
				t.Fatalf("%s: acknowledged job %s: status %d, %v", when, id, code, err)
			}
		}
	}
	t.Logf("%d jobs acknowledged before the first 503", len(acked))
	checkPresent("with the disk full")

	// Space returns: enqueues work again, without a restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ids := enqueueMany(ctx, t, p.HTTPURL, 1, 1, job(10), nil)
		if len(ids) == 1 {
			acked = append(acked, ids[0])
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery 10 s after space returned; logs:\n%s", p.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Everything acknowledged survives a restart, and the file opens cleanly.
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM; logs:\n%s", code, p.Logs())
	}
	p = startTandem(t, env...)
	checkPresent("after the restart")
}
