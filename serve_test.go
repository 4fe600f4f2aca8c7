package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/tandem-run/tandem/store"
	"go.uber.org/goleak"
)

// TestServeSetupErrorStopsWhatStarted runs serve in this process with its listener's port taken,
// so the setup fails after the store, both pools and the jobs runtime started: serve must return
// the error with no goroutine of them left, and the store closed (the file opens again at once).
func TestServeSetupErrorStopsWhatStarted(t *testing.T) {
	procs, memLimit := runtime.GOMAXPROCS(0), debug.SetMemoryLimit(-1)
	t.Cleanup(func() { runtime.GOMAXPROCS(procs); debug.SetMemoryLimit(memLimit) }) // serve sets both
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	db := filepath.Join(t.TempDir(), "db")
	for _, tc := range []struct{ name, addr, admin string }{
		{"main listener", taken.Addr().String(), "127.0.0.1:0"},
		{"admin listener", "127.0.0.1:0", taken.Addr().String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"serve", "--config", "config.yaml", "--store.path", db,
				"--server.addr", tc.addr, "--admin.addr", tc.admin, "--jobs.autoscale.min", "1", "--jobs.autoscale.max", "4", "--server.autoscale.min", "2", "--server.autoscale.max", "8"}, nil, &stdout, &stderr)
			if code != exitFail || !strings.Contains(stderr.String(), "address already in use") {
				t.Fatalf("serve with %s taken: exit %d, stderr:\n%s", tc.name, code, stderr.String())
			}
			if strings.Contains(stderr.String(), "tandem started") {
				t.Fatalf("serve said it started:\n%s", stderr.String())
			}
			st, err := store.Open(context.Background(), store.Options{Path: db, OpenTimeout: 50 * time.Millisecond})
			if err != nil {
				t.Fatalf("the store is still open after a failed start: %v", err)
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
