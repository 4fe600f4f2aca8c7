package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/tandemtest"
	"github.com/tandem-run/tandem/pool"
	"github.com/tandem-run/tandem/resize"
	"github.com/tandem-run/tandem/sizing"
)

// limitsBundle is a limits under test over two real pools, its log and the limits it counted.
type limitsBundle struct {
	http, jobs *pool.Pool
	sizes      *resize.Resizer
	logs       *tandemtest.SyncBuffer
	counted    []string
}

// Two CPUs, then one, as a cgroup quota sees them.
var (
	twoCPUs = sizing.Resources{CPUQuota: 2, CPUsAllowed: 2, AllowedCPUs: []int{0, 1}, CPUs: 2, MemoryLimit: 1 << 30}
	oneCPU  = sizing.Resources{CPUQuota: 1, CPUsAllowed: 2, AllowedCPUs: []int{0, 1}, CPUs: 1, MemoryLimit: 1 << 30}
)

// setupLimits sizes two pools from twoCPUs by cfg, as serve does, and returns the limits.
func setupLimits(t *testing.T, cfg Config, env map[string]string) (*limits, *limitsBundle) {
	t.Helper()
	gomaxprocs, memLimit := runtime.GOMAXPROCS(0), debug.SetMemoryLimit(-1)
	t.Cleanup(func() { runtime.GOMAXPROCS(gomaxprocs); debug.SetMemoryLimit(memLimit) })
	opts := sizing.Options{GOMAXPROCS: cfg.Sizing.GOMAXPROCS, Getenv: func(k string) string { return env[k] }}
	rt := sizing.Apply(twoCPUs, opts)
	sz := deriveSizes(cfg, rt)
	b := &limitsBundle{logs: &tandemtest.SyncBuffer{}}
	var err error
	if b.http, err = pool.New(pool.Options{Name: "http", Size: sz.threads}); err != nil {
		t.Fatal(err)
	}
	if b.jobs, err = pool.New(pool.Options{Name: "jobs", Size: sz.concurrency}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.http.Release(context.Background()); _ = b.jobs.Release(context.Background()) })
	log := slog.New(slog.NewJSONHandler(b.logs, nil))
	b.sizes = resize.New(resize.Options{Logger: log})
	b.sizes.Add("http", b.http.Size, b.http.Tune)
	b.sizes.Add("jobs", b.jobs.Size, b.jobs.Tune)
	l, err := newLimits(cfg, twoCPUs, rt, opts, b.sizes, func(limit string) { b.counted = append(b.counted, limit) }, log)
	if err != nil {
		t.Fatal(err)
	}
	return l, b
}

// TestLimitsFollowAuto: with everything on auto, 2 CPUs -> 1 -> 2 moves GOMAXPROCS, threads and
// concurrency both ways, says so in one audit line per change (old and new), counts it, and
// /admin/runtime's info shows the last change.
func TestLimitsFollowAuto(t *testing.T) {
	l, b := setupLimits(t, Config{}, nil)
	ctx := context.Background()
	if runtime.GOMAXPROCS(0) != 2 || b.http.Size() != 5 || b.jobs.Size() != 2 {
		t.Fatalf("start: gomaxprocs %d, threads %d, concurrency %d", runtime.GOMAXPROCS(0), b.http.Size(), b.jobs.Size())
	}
	l.followed(ctx, twoCPUs, oneCPU)
	if runtime.GOMAXPROCS(0) != 1 || b.http.Size() != 3 || b.jobs.Size() != 1 {
		t.Fatalf("2 -> 1: gomaxprocs %d, threads %d, concurrency %d", runtime.GOMAXPROCS(0), b.http.Size(), b.jobs.Size())
	}
	info := l.info()
	if info.GOMAXPROCS != 1 || info.GOMAXPROCSSource != "cgroup" || info.CPUQuota != 1 || info.LimitsChanges != 1 || info.LastLimitsChange == nil {
		t.Fatalf("info after 2 -> 1: %+v", info)
	}
	if c := info.LastLimitsChange; c.Old.GOMAXPROCS != 2 || c.New.GOMAXPROCS != 1 || c.Old.Threads != 5 || c.New.Threads != 3 || c.New.Concurrency != 1 {
		t.Fatalf("last change %+v", *c)
	}
	if b.sizes.SetBy("http") != resize.Limits || !b.sizes.Follows("http") {
		t.Errorf("http set by %q, follows %v", b.sizes.SetBy("http"), b.sizes.Follows("http"))
	}
	l.followed(ctx, oneCPU, twoCPUs)
	if runtime.GOMAXPROCS(0) != 2 || b.http.Size() != 5 || b.jobs.Size() != 2 || l.info().GOMAXPROCSSource != "affinity" {
		t.Fatalf("1 -> 2: gomaxprocs %d, threads %d, concurrency %d", runtime.GOMAXPROCS(0), b.http.Size(), b.jobs.Size())
	}
	if strings.Join(b.counted, ",") != "cpu,cpu" {
		t.Errorf("counted %q", b.counted)
	}
	var line struct {
		Old, New         map[string]any
		GOMAXPROCSSource string `json:"gomaxprocs_source"`
		ThreadsSource    string `json:"threads_source"`
	}
	for _, s := range strings.Split(b.logs.String(), "\n") {
		if strings.Contains(s, `"msg":"limits changed"`) {
			if err := json.Unmarshal([]byte(s), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	if line.Old["gomaxprocs"] != float64(1) || line.New["gomaxprocs"] != float64(2) || line.New["threads"] != float64(5) ||
		line.GOMAXPROCSSource != "affinity" || line.ThreadsSource != "limits" {
		t.Fatalf("last audit line %+v in\n%s", line, b.logs.String())
	}
	if n := strings.Count(b.logs.String(), `"by":"limits"`); n != 4 {
		t.Errorf("%d pool resize lines by limits, want 4:\n%s", n, b.logs.String())
	}
}

// TestLimitsLeaveWhatWasSet: a GOMAXPROCS from the environment or the configuration, a pool size
// from the configuration and one set through the admin API stay as they are; a reload back to
// auto makes a pool follow again.
func TestLimitsLeaveWhatWasSet(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	ctx := context.Background()
	t.Run("env gomaxprocs, configured threads", func(t *testing.T) {
		runtime.GOMAXPROCS(2) // what Go set from GOMAXPROCS=2
		cfg := Config{Server: ServerConfig{Threads: 7}}
		l, b := setupLimits(t, cfg, map[string]string{"GOMAXPROCS": "2"})
		l.followed(ctx, twoCPUs, oneCPU)
		if runtime.GOMAXPROCS(0) != 2 || l.info().GOMAXPROCSSource != "env" || b.http.Size() != 7 || b.jobs.Size() != 2 {
			t.Fatalf("gomaxprocs %d (%s), threads %d, concurrency %d", runtime.GOMAXPROCS(0), l.info().GOMAXPROCSSource, b.http.Size(), b.jobs.Size())
		}
		if b.sizes.SetBy("http") != resize.Config || b.sizes.Follows("http") {
			t.Errorf("http set by %q", b.sizes.SetBy("http"))
		}
	})
	t.Run("configured gomaxprocs", func(t *testing.T) {
		l, b := setupLimits(t, Config{Sizing: SizingConfig{GOMAXPROCS: 2}}, nil)
		l.followed(ctx, twoCPUs, oneCPU)
		if runtime.GOMAXPROCS(0) != 2 || l.info().GOMAXPROCSSource != "config" || b.http.Size() != 5 {
			t.Fatalf("gomaxprocs %d, threads %d", runtime.GOMAXPROCS(0), b.http.Size())
		}
		if l.info().CPUQuota != 1 {
			t.Errorf("the new quota is still reported: %+v", l.info())
		}
	})
	t.Run("admin resize, then reload to auto", func(t *testing.T) {
		l, b := setupLimits(t, Config{}, nil)
		if _, err := b.sizes.Resize(ctx, "jobs", 6, resize.Admin); err != nil {
			t.Fatal(err)
		}
		l.followed(ctx, twoCPUs, oneCPU)
		if b.jobs.Size() != 6 || b.http.Size() != 3 {
			t.Fatalf("after 2 -> 1: concurrency %d (admin said 6), threads %d", b.jobs.Size(), b.http.Size())
		}
		if err := l.resizeConfigured(ctx, "jobs", 0); err != nil { // SIGHUP with jobs.concurrency: auto
			t.Fatal(err)
		}
		if b.jobs.Size() != 1 || !b.sizes.Follows("jobs") {
			t.Fatalf("reload to auto: concurrency %d, follows %v", b.jobs.Size(), b.sizes.Follows("jobs"))
		}
		l.followed(ctx, oneCPU, twoCPUs)
		if b.jobs.Size() != 2 {
			t.Fatalf("after 1 -> 2: concurrency %d", b.jobs.Size())
		}
		if err := l.resizeConfigured(ctx, "jobs", 4); err != nil || b.sizes.Follows("jobs") {
			t.Fatalf("reload to 4: err %v, follows %v", err, b.sizes.Follows("jobs"))
		}
	})
	t.Run("admin resize, then admin back to auto", func(t *testing.T) {
		l, b := setupLimits(t, Config{}, nil)
		if _, err := b.sizes.Resize(ctx, "http", 9, resize.Admin); err != nil {
			t.Fatal(err)
		}
		l.followed(ctx, twoCPUs, oneCPU)
		if b.http.Size() != 9 {
			t.Fatalf("after 2 -> 1: threads %d, admin said 9", b.http.Size())
		}
		old, err := l.backToAuto(ctx, "http", slog.String("remote", "test"))
		if err != nil || old != 9 || b.http.Size() != 3 || !b.sizes.Follows("http") || b.sizes.SetBy("http") != resize.Auto {
			t.Fatalf("back to auto: old %d, err %v, threads %d, follows %v, set by %q", old, err, b.http.Size(), b.sizes.Follows("http"), b.sizes.SetBy("http"))
		}
		if !strings.Contains(b.logs.String(), `"msg":"pool size back on auto","pool":"http","old":9,"new":3,"remote":"test"`) {
			t.Errorf("no audit line for it:\n%s", b.logs.String())
		}
		l.followed(ctx, oneCPU, twoCPUs)
		if b.http.Size() != 5 {
			t.Fatalf("after 1 -> 2: threads %d, want 5 (following again)", b.http.Size())
		}
		b.sizes.Controller("jobs") // an autoscaler runs it: its size is the controller's
		if _, err := l.backToAuto(ctx, "jobs"); !errors.Is(err, errAutoscaled) || b.jobs.Size() != 2 {
			t.Fatalf("auto of an autoscaled pool: %v, concurrency %d", err, b.jobs.Size())
		}
	})
}

// TestLimitsRepin: a change of the CPU set moves the pinned job workers to the new one (once per
// change, with a log line), and a change that keeps the set does not.
func TestLimitsRepin(t *testing.T) {
	l, b := setupLimits(t, Config{}, nil)
	var got [][]int
	l.repin = func(cpus []int) (bool, error) { got = append(got, cpus); return true, nil }
	ctx := context.Background()
	l.followed(ctx, twoCPUs, oneCPU) // the quota only: the same CPUs
	if len(got) != 0 {
		t.Fatalf("re-pinned for a quota change: %v", got)
	}
	moved := oneCPU
	moved.AllowedCPUs, moved.CPUsAllowed = []int{1}, 1
	l.followed(ctx, oneCPU, moved)
	if len(got) != 1 || len(got[0]) != 1 || got[0][0] != 1 {
		t.Fatalf("re-pinned to %v, want once to [1]", got)
	}
	if !strings.Contains(b.logs.String(), `"msg":"job workers re-pinned","old_cpus":[0,1],"cpus":[1]`) {
		t.Errorf("no re-pin line:\n%s", b.logs.String())
	}
	if !slices.Contains(b.counted, "cpu") {
		t.Errorf("the CPU set's change was not counted: %v", b.counted)
	}
}

// TestLimitsMemory: a GOMEMLIMIT derived from the memory limit follows it, and goes back to Go's
// default when the limit goes; one set in the environment stays.
func TestLimitsMemory(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	ctx := context.Background()
	l, b := setupLimits(t, Config{}, nil)
	half := twoCPUs
	half.MemoryLimit = 1 << 29
	l.followed(ctx, twoCPUs, half)
	if got := debug.SetMemoryLimit(-1); got != 483183820 || l.info().GOMEMLIMIT != got {
		t.Fatalf("GOMEMLIMIT %d, info %+v", got, l.info())
	}
	none := twoCPUs
	none.MemoryLimit = 0
	l.followed(ctx, half, none)
	if got := debug.SetMemoryLimit(-1); got != 1<<63-1 || l.info().GOMEMLIMITSource != "none" {
		t.Fatalf("limit gone: GOMEMLIMIT %d, info %+v", got, l.info())
	}
	if strings.Join(b.counted, ",") != "memory,memory" || b.http.Size() != 5 {
		t.Errorf("counted %q, threads %d", b.counted, b.http.Size())
	}

	debug.SetMemoryLimit(3 << 30) // what Go set from GOMEMLIMIT=3GiB
	l, _ = setupLimits(t, Config{}, map[string]string{"GOMEMLIMIT": "3GiB"})
	l.followed(ctx, twoCPUs, half)
	if got := debug.SetMemoryLimit(-1); got != 3<<30 || l.info().GOMEMLIMITSource != "env" {
		t.Fatalf("env GOMEMLIMIT: %d, %+v", got, l.info())
	}
}
