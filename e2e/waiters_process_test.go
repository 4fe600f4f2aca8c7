package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
)

// rssKiB reads a process's resident set from /proc.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// TestThousandWaitingClients: a thousand clients wait on one job at once (?wait=60s, over 1,000
// connections), with 5 threads: none is refused, an ordinary request still gets a thread, and the
// process's memory grows by a few KiB per waiter (logged: the figure for docs/jobs.md); then the
// job ends and every waiter gets it. The bound asserted is loose (64 KiB a waiter, about twice
// the measure; eight times that under -race, whose binary is built with the race detector): it
// catches a waiter that holds much more than a connection's worth of memory, not noise.
func TestThousandWaitingClients(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1,000 connections")
	}
	p := tandemtest.Start(t, tandemBin, "TANDEM_STORE_PATH="+filepath.Join(t.TempDir(), "db"), "TANDEM_SERVER_THREADS=5")
	pid := p.Cmd.Process.Pid
	post := func(path, body string) map[string]any {
		t.Helper()
		resp, err := http.Post(p.HTTPURL+path, "application/json", bytes.NewReader([]byte(body)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return out
	}
	job := post("/v1/jobs", `{"kind":"sleep","payload":{"ms":600000}}`)
	id, _ := job["id"].(string)
	if id == "" {
		t.Fatalf("enqueue: %v", job)
	}
	// Warm the paths a waiter takes, so what is measured is the waiters.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2000}}
	for range 20 {
		if resp, err := client.Get(p.HTTPURL + "/v1/jobs/" + id + "?wait=1ms"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	heap := func() (alloc, goroutines int) {
		var info struct {
			HeapAlloc  int `json:"heap_alloc_bytes"`
			Goroutines int `json:"goroutines"`
		}
		if resp, err := http.Get(p.AdminURL + "/admin/runtime"); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&info)
			resp.Body.Close()
		}
		return info.HeapAlloc, info.Goroutines
	}
	heapBefore, gBefore := heap()
	before := rssKiB(t, pid)
	const n = 1000
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	states := make(chan string, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, "GET", p.HTTPURL+"/v1/jobs/"+id+"?wait=60s", nil)
			resp, err := client.Do(req)
			if err != nil {
				states <- "error: " + err.Error()
				return
			}
			defer resp.Body.Close()
			var j struct{ State string }
			if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&j) != nil {
				states <- "status " + resp.Status
				return
			}
			states <- j.State
		}()
	}
	tandemtest.WaitFor(t, "1,000 clients parked", func() bool {
		if len(states) > 0 {
			t.Fatalf("a waiter answered early: %s", <-states)
		}
		var info struct{ Waiters int }
		resp, err := http.Get(p.AdminURL + "/admin/runtime")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&info) == nil && info.Waiters == n
	})
	after := rssKiB(t, pid)
	heapAfter, gAfter := heap()
	t.Logf("1,000 waiting clients: Go heap %+d KiB, %+d goroutines", (heapAfter-heapBefore)>>10, gAfter-gBefore)
	resp, err := http.Get(p.HTTPURL + "/v1/queues")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("an ordinary request with 1,000 waiting: %v %v", err, resp)
	}
	resp.Body.Close()
	per := float64(after-before) * 1024 / n
	t.Logf("1,000 waiting clients: RSS %d KiB -> %d KiB, %.1f KiB per waiter", before, after, per/1024)
	limit := float64(64 << 10)
	if raceEnabled {
		limit *= 8 // the race detector's shadow memory: the figure to quote comes without -race
	}
	if per > limit {
		t.Errorf("%.0f bytes per waiting client, want well under %.0f", per, limit)
	}
	post("/v1/jobs/"+id+"/cancel", `{}`)
	wg.Wait()
	close(states)
	for s := range states {
		if s != "canceled" {
			t.Errorf("a waiter got %q, want the canceled job", s)
			break
		}
	}
}
