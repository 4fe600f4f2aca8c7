package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSystemdNotifyFromBinary: the real binary sends READY=1, then WATCHDOG=1, then STOPPING=1 on
// a real unixgram NOTIFY_SOCKET, in that order.
func TestSystemdNotifyFromBinary(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	p := startTandem(t, "TANDEM_STORE_PATH="+filepath.Join(t.TempDir(), "db"), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=200000")
	var got []string
	read := func() string {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4096)
		n, _, err := conn.ReadFromUnix(buf)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, string(buf[:n]))
		return string(buf[:n])
	}
	if m := read(); !strings.HasPrefix(m, "READY=1") {
		t.Fatalf("first notification %q, want READY=1", m)
	}
	for read() != "WATCHDOG=1" {
	}
	p.Signal(syscall.SIGTERM)
	for !strings.HasPrefix(read(), "STOPPING=1") {
	}
	if code := p.Wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	t.Logf("notifications: %q", got)
}

// cgroupV1 makes a child cgroup under a v1 controller mount, or skips saying why it cannot (and
// fails instead under CI, where .ci/run runs the tests as root on cgroup v1). At cleanup, after the
// process started in it is gone, it moves anything left in it to the root cgroup and removes it.
func cgroupV1(t *testing.T, controller string, files map[string]string) string {
	t.Helper()
	skip := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf(format+" (CI is set: the tests run as root on cgroup v1 there)", args...)
		}
		t.Skipf(format, args...)
	}
	root := filepath.Join("/sys/fs/cgroup", controller)
	var st syscall.Statfs_t
	if err := syscall.Statfs(root, &st); err != nil || st.Type != 0x27e0eb { // CGROUP_SUPER_MAGIC
		skip("no cgroup v1 %s hierarchy at %s", controller, root)
	}
	dir := filepath.Join(root, fmt.Sprintf("tandem-test-%d-%d", os.Getpid(), time.Now().UnixNano()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		skip("cannot create a cgroup here (needs root and a writable %s): %v", root, err)
	}
	t.Cleanup(func() {
		for range 50 { // a process exiting may still be listed for a moment
			if os.Remove(dir) == nil {
				return
			}
			// A cgroup with a task in it cannot be removed: move what is left to the root.
			if procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
				for _, pid := range strings.Fields(string(procs)) {
					_ = os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(pid), 0o644)
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("could not remove cgroup %s", dir)
	})
	for name, v := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			skip("cannot write %s: %v", name, err)
		}
	}
	return dir
}

// TestBinaryInCgroupV1: inside a real cgroup v1 limited to 1 CPU (cfs_quota_us=100000 of 100000)
// and 512 MiB, tandem reports GOMAXPROCS=1 from the cgroup, and GOMEMLIMIT 90% of the limit.
func TestBinaryInCgroupV1(t *testing.T) {
	t.Parallel()
	cpu := cgroupV1(t, "cpu", map[string]string{"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "100000"})
	mem := cgroupV1(t, "memory", map[string]string{"memory.limit_in_bytes": "536870912"})
	// The shell joins both cgroups before exec, so tandem starts inside them.
	p := startTandemNoWait(t, func(cmd *exec.Cmd) {
		cmd.Args = []string{"/bin/sh", "-c", `echo $$ > "$1/cgroup.procs" && echo $$ > "$2/cgroup.procs" && exec "$3" serve`, "sh", cpu, mem, tandemBin}
		cmd.Path = "/bin/sh"
	}, "TANDEM_STORE_PATH="+filepath.Join(t.TempDir(), "db"), "TANDEM_JOBS_CONCURRENCY=auto")
	p.WaitStarted()
	s := p.Started
	if s["gomaxprocs"] != float64(1) || s["gomaxprocs_source"] != "cgroup" || s["cpu_quota"] != float64(1) {
		t.Fatalf("start line: gomaxprocs %v (%v), cpu_quota %v", s["gomaxprocs"], s["gomaxprocs_source"], s["cpu_quota"])
	}
	if s["threads"] != float64(3) || s["concurrency"] != float64(1) {
		t.Errorf("derived threads %v concurrency %v, want 3 and 1", s["threads"], s["concurrency"])
	}
	if s["memory_limit"] != float64(536870912) || s["gomemlimit"] != float64(483183820) {
		t.Errorf("memory_limit %v gomemlimit %v", s["memory_limit"], s["gomemlimit"])
	}
	var rt map[string]any
	if _, err := call(context.Background(), http.DefaultClient, "GET", p.AdminURL+"/admin/runtime", "", nil, &rt); err != nil {
		t.Fatal(err)
	}
	if rt["gomaxprocs"] != float64(1) || rt["gomemlimit"] != float64(483183820) {
		t.Errorf("/admin/runtime: %v", rt)
	}
	// The GC's heap floor (runtime.gc_heap_floor_bytes, 32 MiB, under a quarter of the limit)
	// raised GOGC on this small heap, and says so.
	if gogc, _ := rt["gogc"].(float64); rt["gogc_source"] != "heap_floor" || gogc <= 100 {
		t.Errorf("/admin/runtime gogc %v (%v); want above 100 from heap_floor", rt["gogc"], rt["gogc_source"])
	}
	p.Signal(syscall.SIGTERM)
	p.Wait(30 * time.Second)
}
