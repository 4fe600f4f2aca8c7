package sizing

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, goleak.IgnoreCurrent()) }

// watchBundle is a fake cgroup v1 tree the test rewrites, and what the watcher reported.
type watchBundle struct {
	root string
	logs *tandemtest.SyncBuffer
	mu   sync.Mutex
	seen [][2]Resources // old, new
}

func (b *watchBundle) write(t *testing.T, file, content string) {
	t.Helper()
	tandemtest.WriteFile(t, filepath.Join(b.root, file), content)
}

func (b *watchBundle) changes() [][2]Resources {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([][2]Resources(nil), b.seen...)
}

const (
	v1Quota = "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us"
	v1Mem   = "sys/fs/cgroup/memory/memory.limit_in_bytes"
)

// setupWatch copies testdata/cgroup/v1 (3 CPUs of 4, 512 MiB) into a temporary root and returns a
// watcher reading it.
func setupWatch(t *testing.T, interval time.Duration) (*Watcher, *watchBundle) {
	t.Helper()
	b := &watchBundle{root: t.TempDir(), logs: &tandemtest.SyncBuffer{}}
	if err := os.CopyFS(b.root, os.DirFS("testdata/cgroup/v1")); err != nil {
		t.Fatal(err)
	}
	w, err := NewWatcher(WatchOptions{
		Interval: interval,
		Detect:   DetectOptions{Root: b.root, Affinity: func() ([]int, error) { return []int{0, 1, 2, 3}, nil }},
		OnChange: func(_ context.Context, old, new Resources) {
			b.mu.Lock()
			b.seen = append(b.seen, [2]Resources{old, new})
			b.mu.Unlock()
		},
		Logger: slog.New(slog.NewTextHandler(b.logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return w, b
}

// TestWatcherReportsChanges: each change of the quota or the memory limit is reported once, old
// against new; a read that finds nothing new reports nothing.
func TestWatcherReportsChanges(t *testing.T) {
	w, b := setupWatch(t, time.Hour) // the test drives Check itself
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	ctx := context.Background()
	if w.Check(ctx) {
		t.Fatal("a change reported with nothing changed")
	}
	b.write(t, v1Quota, "100000\n") // 3 CPUs -> 1
	if !w.Check(ctx) || w.Check(ctx) {
		t.Fatal("a quota change must be reported once")
	}
	b.write(t, v1Mem, "9223372036854771712\n") // v1's "no limit"
	b.write(t, v1Quota, "-1\n")
	if !w.Check(ctx) {
		t.Fatal("limits removed, not reported")
	}
	got := b.changes()
	if len(got) != 2 {
		t.Fatalf("changes: %+v", got)
	}
	if o, n := got[0][0], got[0][1]; o.CPUQuota != 3 || n.CPUQuota != 1 || n.CPUs != 1 || n.MemoryLimit != 512<<20 {
		t.Errorf("first change %+v -> %+v", o, n)
	}
	if n := got[1][1]; n.CPUQuota != 0 || n.CPUs != 4 || n.MemoryLimit != 0 {
		t.Errorf("second change -> %+v", n)
	}
}

// TestWatcherKeepsLastGoodOnError: a garbled file changes nothing and is logged once, however
// many reads find it; when it is readable again the change against the last good limits counts.
func TestWatcherKeepsLastGoodOnError(t *testing.T) {
	w, b := setupWatch(t, time.Hour)
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	ctx := context.Background()
	b.write(t, v1Quota, "lots\n")
	for range 3 {
		if w.Check(ctx) {
			t.Fatal("an unreadable quota reported as a change")
		}
	}
	if n := strings.Count(b.logs.String(), "cannot read the limits"); n != 1 {
		t.Fatalf("warned %d times, want once:\n%s", n, b.logs.String())
	}
	b.write(t, v1Quota, "200000\n")
	if !w.Check(ctx) || !strings.Contains(b.logs.String(), "limits readable again") {
		t.Fatalf("recovery: %+v\n%s", b.changes(), b.logs.String())
	}
	if got := b.changes(); len(got) != 1 || got[0][0].CPUQuota != 3 || got[0][1].CPUQuota != 2 {
		t.Fatalf("changes: %+v", got)
	}
}

// TestWatcherLoop: the goroutine finds a change by itself, and Stop ends it (goleak checks).
func TestWatcherLoop(t *testing.T) {
	w, b := setupWatch(t, 5*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err == nil {
		t.Error("second Start accepted")
	}
	b.write(t, v1Quota, "150000\n")
	tandemtest.WaitFor(t, "the change", func() bool { return len(b.changes()) == 1 })
	if n := b.changes()[0][1]; n.CPUQuota != 1.5 || GOMAXPROCSFor(n.CPUs) != 1 {
		t.Fatalf("new limits %+v", n)
	}
	w.Stop()
	w.Stop()
}

func TestNewWatcherOptions(t *testing.T) {
	if _, err := NewWatcher(WatchOptions{}); !errors.Is(err, ErrNoOnChange) {
		t.Errorf("no OnChange: %v", err)
	}
	if _, err := NewWatcher(WatchOptions{Interval: -time.Second, OnChange: func(context.Context, Resources, Resources) {}}); err == nil {
		t.Error("negative interval accepted")
	}
	w, err := NewWatcher(WatchOptions{OnChange: func(context.Context, Resources, Resources) {}})
	if err != nil || w.opts.Interval != DefaultWatchInterval {
		t.Errorf("defaults: %v %v", w.opts.Interval, err)
	}
	w.Stop() // never started: fine
}

// TestReapply: a derived GOMAXPROCS follows new limits, a configured one does not, and a
// GOMEMLIMIT tandem set goes back to no limit when the memory limit goes.
func TestReapply(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	env := func(string) string { return "" }
	two := Resources{CPUQuota: 2, CPUsAllowed: 2, CPUs: 2, MemoryLimit: 1 << 30}
	one := Resources{CPUQuota: 1, CPUsAllowed: 2, CPUs: 1}
	s := Apply(two, Options{Getenv: env})
	if s.GOMAXPROCS != 2 || s.GOMAXPROCSSource != "affinity" || s.GOMEMLIMITSource != "cgroup" {
		t.Fatalf("start: %+v", s)
	}
	s = Reapply(s, one, Options{Getenv: env})
	if s.GOMAXPROCS != 1 || s.GOMAXPROCSSource != "cgroup" || runtime.GOMAXPROCS(0) != 1 {
		t.Fatalf("after 2 -> 1: %+v (runtime %d)", s, runtime.GOMAXPROCS(0))
	}
	if s.GOMEMLIMITSource != "none" || debug.SetMemoryLimit(-1) != 1<<63-1 {
		t.Fatalf("memory limit removed: %+v, runtime %d", s, debug.SetMemoryLimit(-1))
	}
	s = Reapply(s, two, Options{GOMAXPROCS: 3, Getenv: env})
	if s.GOMAXPROCS != 3 || s.GOMAXPROCSSource != "config" {
		t.Fatalf("configured: %+v", s)
	}
}

// BenchmarkDetect is the cost of one read of the running process's limits: what a Watcher pays
// every Interval.
func BenchmarkDetect(b *testing.B) {
	for b.Loop() {
		if _, err := Detect(DetectOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
