package sizing

import (
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestDetect reads the fake cgroup trees in testdata/cgroup, each a filesystem root with
// /proc/self/cgroup, /proc/self/mountinfo and the cgroup files.
func TestDetect(t *testing.T) {
	four := func() ([]int, error) { return []int{0, 1, 2, 3}, nil }
	cases := []struct {
		tree       string
		quota      float64
		cpus       float64
		mem        int64
		version    int
		gomaxprocs int
		errPart    string
	}{
		{"v2", 1.5, 1.5, 256 << 20, 2, 1, ""},
		{"v2-nolimit", 0, 4, 0, 2, 4, ""},
		{"v2-nested", 2, 2, 1 << 30, 2, 2, ""},
		{"v2-half", 0.5, 0.5, 0, 2, 1, ""},
		{"v1", 3, 3, 512 << 20, 1, 3, ""},
		{"v1-nolimit", 0, 4, 0, 1, 4, ""},
		{"v1-nested", 1, 1, 0, 1, 1, ""},
		{"none", 0, 4, 0, 0, 4, ""},
		{"garbage", 0, 4, 0, 0, 0, "cpu.max"},
	}
	for _, tc := range cases {
		t.Run(tc.tree, func(t *testing.T) {
			r, err := Detect(DetectOptions{Root: filepath.Join("testdata/cgroup", tc.tree), Affinity: four})
			if tc.errPart != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errPart) {
					t.Fatalf("got %v, want an error naming %s", err, tc.errPart)
				}
				if r.CPUsAllowed != 4 {
					t.Fatalf("affinity lost on error: %+v", r)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.CPUQuota != tc.quota || r.CPUs != tc.cpus || r.MemoryLimit != tc.mem || r.CgroupVersion != tc.version || r.CPUsAllowed != 4 {
				t.Fatalf("got %+v", r)
			}
			if g := GOMAXPROCSFor(r.CPUs); g != tc.gomaxprocs {
				t.Fatalf("GOMAXPROCSFor(%v) = %d, want %d", r.CPUs, g, tc.gomaxprocs)
			}
		})
	}
}

func TestSizingRules(t *testing.T) {
	for cpus, want := range map[float64]int{0.25: 1, 0.5: 1, 1: 1, 1.5: 1, 1.99: 1, 2: 2, 2.5: 2, 16: 16} {
		if got := GOMAXPROCSFor(cpus); got != want {
			t.Errorf("GOMAXPROCSFor(%v) = %d, want %d", cpus, got, want)
		}
	}
	if DefaultThreads(1) != 3 || DefaultThreads(4) != 9 || DefaultConcurrency(4) != 4 {
		t.Error("default sizes")
	}
}

// TestApplyPrecedence: GOMAXPROCS env > config > derived; GOMEMLIMIT env > cgroup ratio.
func TestApplyPrecedence(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1)) // the test sets tiny limits
	res := Resources{CPUQuota: 1.5, CPUsAllowed: 4, CPUs: 1.5, MemoryLimit: 1000}
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	s := Apply(res, Options{Getenv: env(nil)})
	if s.GOMAXPROCS != 1 || s.GOMAXPROCSSource != "cgroup" || runtime.GOMAXPROCS(0) != 1 || s.GOMEMLIMIT != 900 || s.GOMEMLIMITSource != "cgroup" {
		t.Fatalf("derived: %+v", s)
	}
	s = Apply(res, Options{GOMAXPROCS: 3, GOMEMLIMITRatio: 0.5, Getenv: env(nil)})
	if s.GOMAXPROCS != 3 || s.GOMAXPROCSSource != "config" || s.GOMEMLIMIT != 500 {
		t.Fatalf("config: %+v", s)
	}
	runtime.GOMAXPROCS(2) // what Go would have set from GOMAXPROCS=2
	s = Apply(res, Options{GOMAXPROCS: 3, Getenv: env(map[string]string{"GOMAXPROCS": "2", "GOMEMLIMIT": "1GiB"})})
	if s.GOMAXPROCS != 2 || s.GOMAXPROCSSource != "env" || s.GOMEMLIMITSource != "env" {
		t.Fatalf("env: %+v", s)
	}
	s = Apply(Resources{CPUsAllowed: 2, CPUs: 2}, Options{Getenv: env(nil)})
	if s.GOMAXPROCS != 2 || s.GOMAXPROCSSource != "affinity" || s.GOMEMLIMITSource != "none" {
		t.Fatalf("no limits: %+v", s)
	}
}
