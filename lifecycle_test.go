package main

import (
	"context"
	"net/http"
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
	p := startTandem(t, "TANDEM_STORE_PATH="+filepath.Join(t.TempDir(), "db"), "TANDEM_SERVER_DEMO_ROUTES=true", "TANDEM_SERVER_THREADS=8")
	hc := &http.Client{Timeout: 20 * time.Second}
	var wg sync.WaitGroup
	codes := make(chan int, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, err := call(context.Background(), hc, http.MethodGet, p.httpURL+"/demo/io?ms=1500", "", nil, nil)
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
		if _, err := call(context.Background(), hc, http.MethodGet, p.adminURL+"/admin/pools", "", nil, &pools); err == nil && pools["http"].Running == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("requests never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.signal(syscall.SIGTERM)
	// Readiness flips at once (the listener may already refuse connections: both mean "not ready").
	deadline = time.Now().Add(2 * time.Second)
	for {
		code, err := call(context.Background(), &http.Client{Timeout: time.Second}, http.MethodGet, p.httpURL+"/readyz", "", nil, nil)
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
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit status %d, want 0", code)
	}
	if _, err := call(context.Background(), &http.Client{Timeout: time.Second}, http.MethodGet, p.httpURL+"/healthz", "", nil, nil); err == nil {
		t.Fatal("a new connection was accepted after shutdown")
	}
	if !strings.Contains(p.Logs(), `"msg":"tandem stopped"`) {
		t.Errorf("no clean stop logged")
	}
}
