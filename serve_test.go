package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-run/tandem/store"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
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

// TestListenerDeathExits kills tandem's main listening socket from outside the process (shutdown(2)
// on a copy of its descriptor, taken with pidfd_getfd), so the listener's Serve fails with an
// accept error as on a real socket failure: tandem must log it, drain and exit non-zero rather
// than keep running with a dead listener.
func TestListenerDeathExits(t *testing.T) {
	for _, which := range []string{"main", "admin"} {
		t.Run(which, func(t *testing.T) {
			p := startTandem(t, "TANDEM_STORE_PATH="+filepath.Join(t.TempDir(), "db"))
			addr := strings.TrimPrefix(p.HTTPURL, "http://")
			if which == "admin" {
				addr = strings.TrimPrefix(p.AdminURL, "http://")
			}
			killListener(t, p.Cmd.Process.Pid, addr)
			if code := p.Wait(30 * time.Second); code != exitFail {
				t.Fatalf("exit %d after its %s listener died, want %d", code, which, exitFail)
			}
			logs := p.Logs()
			for _, want := range []string{`"msg":"listener stopped"`, "tandem serve: a listener stopped", "invalid argument"} {
				if !strings.Contains(logs, want) {
					t.Errorf("logs lack %q:\n%s", want, logs)
				}
			}
			if strings.Contains(logs, `"msg":"tandem stopped"`) {
				t.Errorf("a dead listener was reported as a clean stop:\n%s", logs)
			}
		})
	}
}

// killListener shuts down the listening socket bound to addr in process pid: accept(2) on it then
// fails with EINVAL. It skips the test where pidfd_getfd is not allowed.
func killListener(t *testing.T, pid int, addr string) {
	t.Helper()
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portStr)
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Skipf("pidfd_open: %v", err)
	}
	defer unix.Close(pidfd)
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		target, _ := os.Readlink(filepath.Join(dir, e.Name()))
		n, err := strconv.Atoi(e.Name())
		if err != nil || !strings.HasPrefix(target, "socket:") {
			continue
		}
		fd, err := unix.PidfdGetfd(pidfd, n, 0)
		if err != nil {
			t.Skipf("pidfd_getfd: %v", err)
		}
		listening, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
		sa, _ := unix.Getsockname(fd)
		if in4, ok := sa.(*unix.SockaddrInet4); ok && listening == 1 && in4.Port == port {
			err := unix.Shutdown(fd, unix.SHUT_RD)
			unix.Close(fd)
			if err != nil {
				t.Fatalf("shutdown the listener: %v", err)
			}
			return
		}
		unix.Close(fd)
	}
	t.Fatalf("no listening socket on port %d in process %d", port, pid)
}
