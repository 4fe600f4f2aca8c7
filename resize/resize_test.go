package resize

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/tandem-run/tandem/pool"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, goleak.IgnoreCurrent()) }

// setup returns a Resizer with one real pool "p" of size 2, the log it writes and the changes it
// reported.
func setup(t *testing.T) (*Resizer, *pool.Pool, *bytes.Buffer, *[]Change) {
	t.Helper()
	p, err := pool.New(pool.Options{Name: "p", Size: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Release(context.Background()) })
	var logs bytes.Buffer
	var mu sync.Mutex
	changes := &[]Change{}
	r := New(Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnChange: func(c Change) { mu.Lock(); *changes = append(*changes, c); mu.Unlock() }})
	r.Add("p", p.Size, p.Tune)
	return r, p, &logs, changes
}

func TestResizeAppliesAndRecords(t *testing.T) {
	r, p, logs, changes := setup(t)
	old, err := r.Resize(context.Background(), "p", 5, Admin, slog.String("request_id", "r1"))
	if err != nil || old != 2 || p.Size() != 5 {
		t.Fatalf("old %d, size %d, err %v; want 2, 5, nil", old, p.Size(), err)
	}
	if len(*changes) != 1 || (*changes)[0] != (Change{Pool: "p", Old: 2, New: 5, By: Admin}) {
		t.Fatalf("changes %+v", *changes)
	}
	line := logs.String()
	for _, want := range []string{`msg="pool resized"`, "pool=p", "old=2", "new=5", "by=admin", "request_id=r1"} {
		if !strings.Contains(line, want) {
			t.Errorf("audit line %q lacks %s", line, want)
		}
	}
	// The same size again changes nothing and records nothing.
	logs.Reset()
	if _, err := r.Resize(context.Background(), "p", 5, Reload); err != nil || len(*changes) != 1 || logs.Len() != 0 {
		t.Fatalf("a no-op resize: err %v, %d changes, log %q", err, len(*changes), logs)
	}
}

func TestResizeRefusesBadInput(t *testing.T) {
	r, p, _, changes := setup(t)
	for _, n := range []int{0, -1, pool.MaxSize + 1} {
		if _, err := r.Resize(context.Background(), "p", n, Admin); !errors.Is(err, ErrInvalidSize) {
			t.Errorf("size %d: %v, want ErrInvalidSize", n, err)
		}
	}
	if _, err := r.Resize(context.Background(), "nope", 3, Admin); !errors.Is(err, ErrUnknownPool) {
		t.Errorf("unknown pool: %v", err)
	}
	if _, err := r.Unpin(context.Background(), "nope"); !errors.Is(err, ErrUnknownPool) {
		t.Errorf("unpin unknown pool: %v", err)
	}
	if p.Size() != 2 || len(*changes) != 0 {
		t.Fatalf("a refused resize changed the pool to %d (%d changes)", p.Size(), len(*changes))
	}
}

// TestPinRule: an operator's size (Admin, Reload) pins an autoscaled pool; the controller's own
// resizes are refused until Unpin; a pool without a controller is never pinned.
func TestPinRule(t *testing.T) {
	for _, by := range []Source{Admin, Reload} {
		t.Run(string(by), func(t *testing.T) {
			r, p, _, _ := setup(t)
			if _, err := r.Resize(context.Background(), "p", 3, by); err != nil || r.Pinned("p") {
				t.Fatalf("no controller yet: err %v, pinned %v; want not pinned", err, r.Pinned("p"))
			}
			apply, paused := r.Controller("p")
			if !r.Autoscaled("p") || paused() {
				t.Fatal("a controller's pool starts autoscaled and not pinned")
			}
			if _, err := apply(4, "grow"); err != nil || p.Size() != 4 || paused() {
				t.Fatalf("controller resize: err %v, size %d, paused %v", err, p.Size(), paused())
			}
			if _, err := r.Resize(context.Background(), "p", 6, by); err != nil || !paused() {
				t.Fatalf("%s resize: err %v, paused %v; want pinned", by, err, paused())
			}
			if _, err := apply(8, "grow"); !errors.Is(err, ErrPinned) || p.Size() != 6 {
				t.Fatalf("controller while pinned: err %v, size %d; want ErrPinned and 6", err, p.Size())
			}
			if was, err := r.Unpin(context.Background(), "p"); !was || err != nil || paused() {
				t.Fatalf("unpin: was %v, err %v, paused %v", was, err, paused())
			}
			if _, err := apply(8, "grow"); err != nil || p.Size() != 8 {
				t.Fatalf("controller after unpin: err %v, size %d", err, p.Size())
			}
		})
	}
}

// TestFollowRule: a pool on auto follows Limits resizes until an operator (Admin, Reload) sets
// its size, and again after Follow; a pool sized by the configuration, or run by an autoscaler,
// never does. SetBy names who set the size each time.
func TestFollowRule(t *testing.T) {
	ctx := context.Background()
	for _, by := range []Source{Admin, Reload} {
		t.Run(string(by), func(t *testing.T) {
			r, p, logs, changes := setup(t)
			if _, err := r.Resize(ctx, "p", 3, Limits); !errors.Is(err, ErrNotAuto) || p.Size() != 2 || r.SetBy("p") != Config {
				t.Fatalf("a configured size followed the limits: err %v, size %d, set by %q", err, p.Size(), r.SetBy("p"))
			}
			if err := r.Follow("p"); err != nil || !r.Follows("p") || r.SetBy("p") != Auto {
				t.Fatalf("Follow: err %v, follows %v, set by %q", err, r.Follows("p"), r.SetBy("p"))
			}
			if _, err := r.Resize(ctx, "p", 1, Limits); err != nil || p.Size() != 1 || r.SetBy("p") != Limits || !r.Follows("p") {
				t.Fatalf("limits resize: err %v, size %d, set by %q", err, p.Size(), r.SetBy("p"))
			}
			if c := (*changes)[len(*changes)-1]; c != (Change{Pool: "p", Old: 2, New: 1, By: Limits}) || !strings.Contains(logs.String(), "by=limits") {
				t.Fatalf("change %+v, log %q", c, logs)
			}
			if _, err := r.Resize(ctx, "p", 1, by); err != nil || r.Follows("p") || r.SetBy("p") != by {
				t.Fatalf("%s, even to the same size, stops the following: follows %v, set by %q", by, r.Follows("p"), r.SetBy("p"))
			}
			if _, err := r.Resize(ctx, "p", 4, Limits); !errors.Is(err, ErrNotAuto) || p.Size() != 1 {
				t.Fatalf("limits over an operator's size: err %v, size %d", err, p.Size())
			}
			if err := r.Follow("p"); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Resize(ctx, "p", 4, Limits); err != nil || p.Size() != 4 {
				t.Fatalf("after Follow again: err %v, size %d", err, p.Size())
			}
		})
	}
	t.Run("autoscaled", func(t *testing.T) {
		r, p, _, _ := setup(t)
		_ = r.Follow("p")
		apply, _ := r.Controller("p")
		if _, err := r.Resize(ctx, "p", 5, Limits); !errors.Is(err, ErrNotAuto) || p.Size() != 2 || r.Follows("p") {
			t.Fatalf("limits fought the autoscaler: err %v, size %d, follows %v", err, p.Size(), r.Follows("p"))
		}
		if _, err := apply(3, "grow"); err != nil || r.SetBy("p") != Autoscale {
			t.Fatalf("autoscale: err %v, set by %q", err, r.SetBy("p"))
		}
	})
	if err := New(Options{}).Follow("nope"); !errors.Is(err, ErrUnknownPool) {
		t.Errorf("Follow of an unknown pool: %v", err)
	}
}

// TestApplyIsThePoolsOwn: the jobs pool's apply function is the runtime's Resize, so whatever it does
// besides Tune (wake the dispatcher) happens for every source.
func TestApplyIsThePoolsOwn(t *testing.T) {
	r := New(Options{Logger: slog.New(slog.DiscardHandler)})
	size, calls := 1, 0
	r.Add("jobs", func() int { return size }, func(n int) (int, error) { calls++; old := size; size = n; return old, nil })
	apply, _ := r.Controller("jobs")
	_, _ = r.Resize(context.Background(), "jobs", 2, Admin)
	_, _ = r.Resize(context.Background(), "jobs", 3, Reload)
	_, _ = r.Unpin(context.Background(), "jobs")
	_, _ = apply(4, "grow")
	if calls != 3 || size != 4 {
		t.Fatalf("apply called %d times, size %d; want 3 and 4", calls, size)
	}
}

func TestConcurrentResizes(t *testing.T) {
	r, p, _, changes := setup(t)
	apply, _ := r.Controller("p")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range 50 {
				if i%2 == 0 {
					_, _ = r.Resize(context.Background(), "p", 1+(n+i)%16, Admin)
					_, _ = r.Unpin(context.Background(), "p")
				} else {
					_, _ = apply(1+(n*i)%16, "test")
				}
				_ = r.Pinned("p")
			}
		}()
	}
	wg.Wait()
	last := (*changes)[len(*changes)-1]
	if p.Size() != last.New {
		t.Fatalf("pool at %d, last recorded change to %d", p.Size(), last.New)
	}
}
