package sizing

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// DefaultWatchInterval is how often a Watcher reads the limits again unless told otherwise. A read
// is a few small files (/proc/self/cgroup, mountinfo, two or three cgroup files) and the affinity
// mask: 0.2 ms on a 2-core VM (BenchmarkDetect), so every 5 s costs 0.004% of a core, and a resized
// pod is followed within 5 s.
const DefaultWatchInterval = 5 * time.Second

// WatchOptions configure a Watcher. Only OnChange is required.
type WatchOptions struct {
	// Interval is how often the limits are read again. Default DefaultWatchInterval.
	Interval time.Duration
	// Detect says where the limits are read from. Default: the running process (Detect's default).
	Detect DetectOptions
	// Initial is what the process was sized from; the first change is reported against it.
	// Default (CPUsAllowed 0): the limits read by Start.
	Initial Resources
	// OnChange is called on the watcher's goroutine with the limits before and after each
	// change. The next read waits for it to return. Required.
	OnChange func(ctx context.Context, old, new Resources)
	// Logger gets a warning when the limits cannot be read (once for each distinct error; the
	// last limits read stay in force meanwhile) and a line when they can be again. Default
	// slog.Default().
	Logger *slog.Logger
}

// ErrNoOnChange means WatchOptions.OnChange was not set.
var ErrNoOnChange = errors.New("sizing: WatchOptions.OnChange is required")

// Watcher reads the CPU and memory limits every Interval and reports a change, so that a
// Kubernetes in-place pod resize or a new systemd CPUQuota= reaches a running process. (Go 1.25+
// follows the CPU limit on its own, but only while nobody called runtime.GOMAXPROCS, and tandem
// does, to round the quota down.)
type Watcher struct {
	opts WatchOptions

	mu      sync.Mutex // held by each check, so Check and the loop never interleave
	last    Resources
	lastErr string

	cancel context.CancelFunc
	done   chan struct{}
}

// NewWatcher returns a Watcher; Start runs it.
func NewWatcher(opts WatchOptions) (*Watcher, error) {
	if opts.OnChange == nil {
		return nil, ErrNoOnChange
	}
	opts.Interval = cmp.Or(opts.Interval, DefaultWatchInterval)
	if opts.Interval < 0 {
		return nil, errors.New("sizing: WatchOptions.Interval must be positive")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Watcher{opts: opts, last: opts.Initial}, nil
}

// Start reads the limits (unless Initial was given) and starts the goroutine that reads them every
// Interval until ctx ends or Stop is called.
func (w *Watcher) Start(ctx context.Context) error {
	if w.done != nil {
		return errors.New("sizing: watcher already started")
	}
	if w.last.CPUsAllowed == 0 {
		r, err := Detect(w.opts.Detect)
		if err != nil {
			w.opts.Logger.Warn("limits watch: cannot read the limits; changes are reported against what could be read", "err", err)
			w.lastErr = err.Error()
		}
		w.last = r
	}
	ctx, w.cancel = context.WithCancel(ctx)
	w.done = make(chan struct{})
	go w.run(ctx)
	return nil
}

// Stop ends the goroutine and waits for it (and for an OnChange in progress). Calling it on a
// Watcher never started, or twice, is fine.
func (w *Watcher) Stop() {
	if w.done == nil {
		return
	}
	w.cancel()
	<-w.done
}

func (w *Watcher) run(ctx context.Context) {
	defer close(w.done)
	t := time.NewTicker(w.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.Check(ctx)
		}
	}
}

// Check reads the limits now and, when they differ from the last ones read, calls OnChange and
// reports true. A read that fails changes nothing.
func (w *Watcher) Check(ctx context.Context) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	r, err := Detect(w.opts.Detect)
	if err != nil {
		// Half-read limits would resize the pools from nonsense: keep the last good ones.
		if msg := err.Error(); msg != w.lastErr {
			w.opts.Logger.Warn("limits watch: cannot read the limits; keeping the last ones", "err", err)
			w.lastErr = msg
		}
		return false
	}
	if w.lastErr != "" {
		w.opts.Logger.Info("limits watch: limits readable again")
		w.lastErr = ""
	}
	if r.Equal(w.last) {
		return false
	}
	old := w.last
	w.last = r
	w.opts.OnChange(ctx, old, r)
	return true
}
