package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/tandem-run/tandem/resize"
	"github.com/tandem-run/tandem/server"
	"github.com/tandem-run/tandem/sizing"
)

// autoSize is the size of pool name on auto for a GOMAXPROCS: the rule of the start, of a
// reload back to auto and of a limits change.
func autoSize(name string, gomaxprocs int) int {
	if name == "http" {
		return sizing.DefaultThreads(gomaxprocs)
	}
	return sizing.DefaultConcurrency(gomaxprocs)
}

// limits is what the process was sized from and what it derived, kept current: a change of the
// container's limits (the sizing.Watcher's OnChange) re-derives GOMAXPROCS and GOMEMLIMIT with
// the start's precedence (sizing.Reapply: the environment and the configuration still win) and
// resizes the pools still on auto through the one door (resize.Limits, which leaves a size an
// operator set or an autoscaler runs). A reload's size change takes the same lock, so that a
// reload back to auto and a limits change cannot cross and leave a pool sized for the old limits.
type limits struct {
	opts     sizing.Options
	sizes    *resize.Resizer
	interval time.Duration // 0: not watched
	log      *slog.Logger
	onChange func(limit string) // metrics: "cpu" or "memory"

	watcher *sizing.Watcher   // nil until start, and when not watched
	gc      *sizing.HeapFloor // GOGC, which info reports

	// repin moves the pinned job workers to a new CPU set (pool.Pool.SetPinCPUs); nil when
	// jobs.pin_cpus is off.
	repin func(cpus []int) (bool, error)

	mu      sync.Mutex
	res     sizing.Resources
	rt      sizing.Settings
	changes int
	last    *server.LimitsChange
}

// newLimits returns the live sizing state of a process sized from res (rt, by opts), and marks the
// pools whose configured size is auto as following the limits.
func newLimits(cfg Config, res sizing.Resources, rt sizing.Settings, opts sizing.Options, sizes *resize.Resizer, onChange func(string), log *slog.Logger) (*limits, error) {
	for name, n := range map[string]int{"http": cfg.Server.Threads, "jobs": cfg.Jobs.Concurrency} {
		if n == 0 {
			if err := sizes.Follow(name); err != nil {
				return nil, err
			}
		}
	}
	return &limits{opts: opts, sizes: sizes, interval: cfg.Sizing.WatchInterval, log: log, onChange: onChange, res: res, rt: rt}, nil
}

// start watches the limits every runtime.watch_interval, unless it is off.
func (l *limits) start(ctx context.Context) error {
	if l.interval <= 0 {
		return nil
	}
	l.mu.Lock()
	initial := l.res
	l.mu.Unlock()
	w, err := sizing.NewWatcher(sizing.WatchOptions{Interval: l.interval, Initial: initial, OnChange: l.followed, Logger: l.log})
	if err != nil {
		return err
	}
	if err := w.Start(ctx); err != nil {
		return err
	}
	l.watcher = w
	return nil
}

// stop ends the watch and waits for a change being applied. Safe to call more than once.
func (l *limits) stop() {
	if l.watcher != nil {
		l.watcher.Stop()
	}
}

// followed handles one change of the limits from old to new.
func (l *limits) followed(ctx context.Context, old, new sizing.Resources) {
	l.mu.Lock()
	defer l.mu.Unlock()
	before := l.derived()
	l.res, l.rt = new, sizing.Reapply(l.rt, new, l.opts)
	after := l.derived()
	for _, name := range []string{"http", "jobs"} {
		_, err := l.sizes.Resize(ctx, name, autoSize(name, l.rt.GOMAXPROCS), resize.Limits,
			slog.String("reason", "limits changed"))
		if err != nil && !errors.Is(err, resize.ErrNotAuto) {
			l.log.Warn("limits changed: pool not resized", "pool", name, "err", err)
		}
	}
	after.Threads, after.Concurrency = l.poolSize("http"), l.poolSize("jobs")
	l.changes++
	l.last = &server.LimitsChange{At: time.Now(), Old: before, New: after}
	l.log.LogAttrs(ctx, slog.LevelInfo, "limits changed", derivedGroup("old", before), derivedGroup("new", after),
		slog.String("gomaxprocs_source", l.rt.GOMAXPROCSSource), slog.String("gomemlimit_source", l.rt.GOMEMLIMITSource),
		slog.String("threads_source", string(l.sizes.SetBy("http"))), slog.String("concurrency_source", string(l.sizes.SetBy("jobs"))))
	cpusMoved := !slices.Equal(old.AllowedCPUs, new.AllowedCPUs)
	if cpusMoved && l.repin != nil && len(new.AllowedCPUs) > 0 {
		// The container's CPU set changed (a cpuset resize): pinned workers move to the new one
		// at their next job, rather than keep the CPUs of the start.
		if ok, err := l.repin(new.AllowedCPUs); err != nil {
			l.log.Warn("limits changed: job workers not re-pinned", "cpus", new.AllowedCPUs, "err", err)
		} else if ok {
			l.log.Info("job workers re-pinned", "old_cpus", old.AllowedCPUs, "cpus", new.AllowedCPUs)
		}
	}
	if l.onChange != nil {
		if old.CPUQuota != new.CPUQuota || old.CPUs != new.CPUs || cpusMoved { // CPUsAllowed is len(AllowedCPUs)
			l.onChange("cpu")
		}
		if old.MemoryLimit != new.MemoryLimit {
			l.onChange("memory")
		}
	}
}

// resizeConfigured applies a reloaded size of pool name: n, or for auto (0) the derived size,
// which then follows the limits again.
func (l *limits) resizeConfigured(ctx context.Context, name string, n int) error {
	_, _, err := l.resizeTo(ctx, name, n, resize.Reload)
	return err
}

// backToAuto is the admin API's {"size": "auto"} (server.Options.AutoSize): pool name gets the
// size derived from the limits again and follows them from then on. An autoscaled pool is refused:
// its controller owns its size (unpin hands it back).
func (l *limits) backToAuto(ctx context.Context, name string, attrs ...slog.Attr) (int, error) {
	if l.sizes.Autoscaled(name) {
		return 0, fmt.Errorf("%w: pool %s is autoscaled; unpin it to hand it back to its autoscaler", errAutoscaled, name)
	}
	old, size, err := l.resizeTo(ctx, name, 0, resize.Admin, attrs...)
	if err != nil {
		return 0, err
	}
	l.log.LogAttrs(ctx, slog.LevelInfo, "pool size back on auto",
		append([]slog.Attr{slog.String("pool", name), slog.Int("old", old), slog.Int("new", size)}, attrs...)...)
	return old, nil
}

// errAutoscaled: size auto asked of a pool an autoscaler runs.
var errAutoscaled = errors.New("no auto size")

// resizeTo sets pool name to n on behalf of by, or for n = 0 to the size derived from the limits,
// which it then follows; it returns the size it had and the size it set.
func (l *limits) resizeTo(ctx context.Context, name string, n int, by resize.Source, attrs ...slog.Attr) (old, size int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	auto := n == 0
	if auto {
		n = autoSize(name, l.rt.GOMAXPROCS)
	}
	if old, err = l.sizes.Resize(ctx, name, n, by, attrs...); err != nil {
		return 0, 0, err
	}
	if auto {
		err = l.sizes.Follow(name)
	}
	return old, n, err
}

// gomaxprocs is the GOMAXPROCS tandem set (the jobs autoscaler's CPU budget).
func (l *limits) gomaxprocs() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rt.GOMAXPROCS
}

// info is /admin/runtime's sizing fields.
func (l *limits) info() server.SizingInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	var last *server.LimitsChange
	if l.last != nil {
		c := *l.last
		last = &c
	}
	info := server.SizingInfo{
		GOMAXPROCS: l.rt.GOMAXPROCS, GOMAXPROCSSource: l.rt.GOMAXPROCSSource,
		CPUQuota: l.res.CPUQuota, CPUsAllowed: l.res.CPUsAllowed, CPUs: l.res.CPUs,
		MemoryLimit: l.res.MemoryLimit, GOMEMLIMIT: l.rt.GOMEMLIMIT, GOMEMLIMITSource: l.rt.GOMEMLIMITSource,
		WatchInterval: l.interval, LimitsChanges: l.changes, LastLimitsChange: last,
	}
	if l.gc != nil {
		info.GOGC, info.GOGCSource = l.gc.GOGC()
	}
	return info
}

// derived is the current limits and settings, with the pools' sizes (l.mu held).
func (l *limits) derived() server.Derived {
	return server.Derived{
		CPUQuota: l.res.CPUQuota, CPUsAllowed: l.res.CPUsAllowed, CPUs: l.res.CPUs, MemoryLimit: l.res.MemoryLimit,
		GOMAXPROCS: l.rt.GOMAXPROCS, GOMEMLIMIT: l.rt.GOMEMLIMIT,
		Threads: l.poolSize("http"), Concurrency: l.poolSize("jobs"),
	}
}

func (l *limits) poolSize(name string) int {
	n, _ := l.sizes.Size(name)
	return n
}

func derivedGroup(key string, d server.Derived) slog.Attr {
	return slog.Group(key, "cpu_quota", nullable(d.CPUQuota), "cpus_allowed", d.CPUsAllowed, "cpus", d.CPUs,
		"memory_limit", nullable(d.MemoryLimit), "gomaxprocs", d.GOMAXPROCS, "gomemlimit", nullable(d.GOMEMLIMIT),
		"threads", d.Threads, "concurrency", d.Concurrency)
}
