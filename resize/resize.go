// Package resize is the one door through which a pool's size changes while tandem runs. The admin
// API, a SIGHUP reload and the autoscalers all call Resizer.Resize, which validates the size,
// applies it (through the pool's own apply function, so the jobs runtime wakes its dispatcher),
// decides whether the change pins the pool against its autoscaler, and records who made it: one
// audit line and one OnChange call (the metric) per change.
//
// The pin rule, in one place: a size an operator asked for (Admin, Reload) pins an autoscaled
// pool, so its controller leaves it alone until Unpin; an autoscaler's own change (Autoscale) is
// refused with ErrPinned while the pool is pinned. A pool with no autoscaler is never pinned.
//
// The follow rule, beside it: a pool whose size was derived from the CPU limit (marked by Follow)
// follows a change of that limit (Limits) until an operator sets its size (Admin, Reload); a pool
// an autoscaler runs never does, its controller owns the size.
package resize

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/tandem-run/tandem/pool"
)

// Source says who asked for a size.
type Source string

// The sources of a resize.
const (
	// Admin is the admin API (and so the CLI and the dashboard). It pins an autoscaled pool.
	Admin Source = "admin"
	// Reload is a SIGHUP that re-read a changed size from the configuration. It pins too: the
	// operator wrote that number down.
	Reload Source = "reload"
	// Autoscale is a pool's controller. It is refused while the pool is pinned.
	Autoscale Source = "autoscale"
	// Limits is a change of the container's CPU limit, re-deriving a size left on auto. It is
	// refused (ErrNotAuto) for a pool an operator sized or an autoscaler runs.
	Limits Source = "limits"
	// Config is SetBy's answer for a size from the configuration at start.
	Config Source = "config"
	// Auto is SetBy's answer for a size derived from the limits (Follow), at start or by a reload
	// back to auto.
	Auto Source = "auto"
)

// Errors callers branch on.
var (
	// ErrUnknownPool means no pool of that name was added.
	ErrUnknownPool = errors.New("no such pool")
	// ErrPinned means an autoscaler asked to resize a pool that an operator pinned.
	ErrPinned = errors.New("pool pinned by a manual resize")
	// ErrInvalidSize means the size is outside 1..pool.MaxSize.
	ErrInvalidSize = errors.New("invalid pool size")
	// ErrNotAuto means a limits change asked to resize a pool whose size is not derived from the
	// limits: an operator set it, or an autoscaler runs it.
	ErrNotAuto = errors.New("pool size not on auto")
)

// Change is one applied resize, as OnChange sees it.
type Change struct {
	Pool     string
	Old, New int
	By       Source
}

// Options configure a Resizer. The zero value is ready to use.
type Options struct {
	// Logger gets the audit line of every change ("pool resized"). Default slog.Default().
	Logger *slog.Logger
	// OnChange is called after each applied change, outside the Resizer's lock (metrics). Optional.
	OnChange func(Change)
}

// Resizer holds the resizable pools by name. It is safe for concurrent use.
type Resizer struct {
	opts  Options
	mu    sync.Mutex
	pools map[string]*target
}

type target struct {
	size       func() int
	apply      func(n int) (old int, err error)
	autoscaled bool
	pinned     bool
	follows    bool   // the size is derived from the limits (Follow) and no operator changed it since
	by         Source // who set the current size
}

// New returns a Resizer with no pools.
func New(opts Options) *Resizer {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Resizer{opts: opts, pools: map[string]*target{}}
}

// Add makes the pool name resizable: size reports its size, apply changes it and returns the size
// it had (a *pool.Pool's Tune, or the jobs runtime's Resize for the jobs pool). Adding a name again
// replaces it.
func (r *Resizer) Add(name string, size func() int, apply func(n int) (int, error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pools[name] = &target{size: size, apply: apply, by: Config}
}

// Resize sets pool name to n on behalf of by and returns the size it had. attrs are added to the
// audit line (the admin API adds the client's address and the request id; an autoscaler its
// reason). Nothing changes when it returns an error.
func (r *Resizer) Resize(ctx context.Context, name string, n int, by Source, attrs ...slog.Attr) (int, error) {
	if err := pool.ValidateSize(n); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalidSize, err)
	}
	r.mu.Lock()
	t, ok := r.pools[name]
	if !ok {
		r.mu.Unlock()
		return 0, fmt.Errorf("%w %q", ErrUnknownPool, name)
	}
	if by == Autoscale && t.pinned {
		r.mu.Unlock()
		return t.size(), fmt.Errorf("resize %s: %w", name, ErrPinned)
	}
	if by == Limits && (!t.follows || t.autoscaled) {
		r.mu.Unlock()
		return t.size(), fmt.Errorf("resize %s: %w", name, ErrNotAuto)
	}
	// The lock is held across apply so that two resizes of one pool cannot interleave their
	// apply and their pin; apply is quick (ants' Tune, a channel send).
	old, err := t.apply(n)
	if err != nil {
		r.mu.Unlock()
		return old, fmt.Errorf("resize %s to %d: %w", name, n, err)
	}
	pinnedNow := t.autoscaled && !t.pinned && (by == Admin || by == Reload)
	if pinnedNow {
		t.pinned = true
	}
	if by == Admin || by == Reload {
		t.follows = false // an operator's number stays, whatever the limits do
	}
	if old != n || by == Admin || by == Reload {
		t.by = by
	}
	r.mu.Unlock()

	if old != n || pinnedNow {
		level := slog.LevelInfo
		if by == Autoscale {
			level = slog.LevelDebug // a controller may move a pool every second; its own line says why at Info
		}
		base := []slog.Attr{slog.String("pool", name), slog.Int("old", old), slog.Int("new", n), slog.String("by", string(by))}
		if pinnedNow {
			base = append(base, slog.Bool("pinned", true))
		}
		r.opts.Logger.LogAttrs(ctx, level, "pool resized", append(base, attrs...)...)
	}
	if old != n && r.opts.OnChange != nil {
		r.opts.OnChange(Change{Pool: name, Old: old, New: n, By: by})
	}
	return old, nil
}

// Controller marks pool name as run by an autoscaler and returns what the controller needs: its
// resize function (Resize with by = Autoscale, the reason on the audit line) and whether it is
// paused (pinned) right now.
func (r *Resizer) Controller(name string) (resize func(n int, reason string) (int, error), paused func() bool) {
	r.mu.Lock()
	if t, ok := r.pools[name]; ok {
		t.autoscaled = true
	}
	r.mu.Unlock()
	resize = func(n int, reason string) (int, error) {
		return r.Resize(context.Background(), name, n, Autoscale, slog.String("reason", reason))
	}
	return resize, func() bool { return r.Pinned(name) }
}

// Size returns pool name's size.
func (r *Resizer) Size(name string) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.pools[name]
	if !ok {
		return 0, fmt.Errorf("%w %q", ErrUnknownPool, name)
	}
	return t.size(), nil
}

// Follow marks pool name's size as derived from the limits: Limits resizes apply to it until an
// operator sets its size. Called at start for a size left on auto, and by a reload that puts it
// back to auto (after its Resize).
func (r *Resizer) Follow(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.pools[name]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownPool, name)
	}
	t.follows, t.by = true, Auto
	return nil
}

// Follows reports whether pool name follows the limits: its size is on auto and no autoscaler
// runs it.
func (r *Resizer) Follows(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.pools[name]
	return ok && t.follows && !t.autoscaled
}

// SetBy says who set pool name's current size: Config or Auto at start, then the Source of the
// last resize that changed it ("" for an unknown pool).
func (r *Resizer) SetBy(name string) Source {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.pools[name]; ok {
		return t.by
	}
	return ""
}

// Autoscaled reports whether a controller runs pool name.
func (r *Resizer) Autoscaled(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.pools[name]
	return ok && t.autoscaled
}

// Pinned reports whether pool name is pinned against its autoscaler.
func (r *Resizer) Pinned(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.pools[name]
	return ok && t.pinned
}

// Unpin hands pool name back to its autoscaler and reports whether it was pinned.
func (r *Resizer) Unpin(ctx context.Context, name string, attrs ...slog.Attr) (bool, error) {
	r.mu.Lock()
	t, ok := r.pools[name]
	if !ok {
		r.mu.Unlock()
		return false, fmt.Errorf("%w %q", ErrUnknownPool, name)
	}
	was := t.pinned
	t.pinned = false
	r.mu.Unlock()
	if was {
		r.opts.Logger.LogAttrs(ctx, slog.LevelInfo, "pool unpinned",
			append([]slog.Attr{slog.String("pool", name)}, attrs...)...)
	}
	return was, nil
}
