package e2e

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBinaryPinsFollowCpuset: tandem starts in a real cgroup v1 cpuset of CPU 0 alone, its two
// job workers pinned (the default) to it. The set grows to CPUs 0-1, as a pod resized with
// exclusive CPUs does: the kernel keeps each thread's own affinity where it still fits, so without
// re-pinning both workers would stay on CPU 0 and the new CPU would run no job. Jobs running on
// both workers show them one on each CPU; then the set shrinks back to CPU 0, and every job
// succeeds throughout.
func TestBinaryPinsFollowCpuset(t *testing.T) {
	t.Parallel()
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs")
	}
	set := cgroupV1(t, "cpuset", map[string]string{"cpuset.mems": "0", "cpuset.cpus": "0"})
	p := startTandemNoWait(t, func(cmd *exec.Cmd) {
		cmd.Args = []string{"/bin/sh", "-c", `echo $$ > "$1/cgroup.procs" && exec "$2" serve`, "sh", set, tandemBin}
		cmd.Path = "/bin/sh"
	}, "TANDEM_STORE_PATH="+filepath.Join(t.TempDir(), "db"), "TANDEM_JOBS_CONCURRENCY=2",
		"TANDEM_RUNTIME_WATCH_INTERVAL=200ms")
	p.WaitStarted()
	task := "/proc/" + strconv.Itoa(p.Cmd.Process.Pid) + "/task"

	// affinities lists, sorted, the CPU of each of the process's threads that may run on one CPU
	// only, and how many threads may run on more.
	affinities := func() (single []int, wider int) {
		tasks, _ := os.ReadDir(task)
		for _, th := range tasks {
			b, err := os.ReadFile(filepath.Join(task, th.Name(), "status"))
			if err != nil {
				continue // the thread ended
			}
			for line := range strings.Lines(string(b)) {
				if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
					if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
						single = append(single, n)
					} else {
						wider++
					}
				}
			}
		}
		slices.Sort(single)
		return single, wider
	}
	var ids []string
	// busy keeps both workers running sleep jobs until check holds (10 s at most), then waits for
	// every job so far to succeed.
	busy := func(step string, check func(single []int, wider int) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		var single []int
		var wider int
		for {
			for range 2 {
				ids = append(ids, enqueueOne(t, p.HTTPURL, map[string]any{"kind": "sleep", "payload": map[string]any{"ms": 150}}))
			}
			time.Sleep(75 * time.Millisecond) // both taken
			if single, wider = affinities(); check(single, wider) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: threads on one CPU: %v, on more: %d", step, single, wider)
			}
		}
		waitAllState(t, p.HTTPURL, ids, "succeeded", 30*time.Second)
		t.Logf("%s: threads on one CPU: %v, on more: %d; %d jobs succeeded", step, single, wider, len(ids))
	}
	onePerCPU := func(single []int, wider int) bool { return slices.Equal(single, []int{0, 1}) && wider > 0 }
	changes := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			var rt struct {
				Changes int `json:"limits_changes"`
			}
			if _, err := call(context.Background(), http.DefaultClient, "GET", p.AdminURL+"/admin/runtime", "", nil, &rt); err == nil && rt.Changes >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the cpuset change was not seen within 10 s (limits_changes < %d)", n)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	write := func(v string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(set, "cpuset.cpus"), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	onlyCPU0 := func(single []int, wider int) bool {
		return wider == 0 && len(single) > 0 && !slices.Contains(single, 1)
	}
	busy("start, CPU 0", onlyCPU0)
	write("0-1")
	changes(1)
	busy("CPUs 0-1", onePerCPU)
	write("0")
	changes(2)
	busy("CPU 0 again", onlyCPU0)
	if !strings.Contains(p.Logs(), `"msg":"job workers re-pinned"`) {
		t.Error("no 'job workers re-pinned' line")
	}
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
