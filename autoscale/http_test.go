package autoscale

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/tandem-run/tandem/pool"
)

// ticks records the controller's "autoscale tick" debug records.
type ticks struct {
	mu      sync.Mutex
	latency []float64 // latency_ms of each tick
}

func (t *ticks) Enabled(context.Context, slog.Level) bool { return true }
func (t *ticks) WithAttrs([]slog.Attr) slog.Handler       { return t }
func (t *ticks) WithGroup(string) slog.Handler            { return t }
func (t *ticks) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "autoscale tick" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "latency_ms" {
			t.mu.Lock()
			t.latency = append(t.latency, a.Value.Float64())
			t.mu.Unlock()
		}
		return true
	})
	return nil
}

func (t *ticks) all() []float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]float64(nil), t.latency...)
}

// serve runs routes behind admission to p and h's Middleware, as tandem's server does, on a
// loopback listener.
func serve(t *testing.T, p *pool.Pool, h *HTTP, routes func(chi.Router)) string {
	t.Helper()
	r := chi.NewRouter()
	admitted := r.With(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			release, err := p.Acquire(r.Context())
			if err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			defer release()
			next.ServeHTTP(w, r)
		})
	}, h.Middleware)
	routes(admitted)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv.URL
}

// sleepFor answers after d, or returns early when the client has gone, as /demo/io does.
func sleepFor(d time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(d):
			w.WriteHeader(http.StatusNoContent)
		case <-r.Context().Done():
		}
	}
}

// load sends n requests to url from each of clients goroutines, each giving up after timeout.
func load(ctx context.Context, url string, clients, n int, timeout time.Duration) *sync.WaitGroup {
	var wg sync.WaitGroup
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	for range clients {
		wg.Go(func() {
			for range n {
				rctx, cancel := context.WithTimeout(ctx, timeout)
				req, _ := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
				resp, err := hc.Do(req)
				if err == nil {
					resp.Body.Close()
				}
				cancel()
				if errors.Is(ctx.Err(), context.Canceled) {
					return
				}
			}
		})
	}
	return &wg
}

func newRealPool(t *testing.T, size int) *pool.Pool {
	t.Helper()
	p, err := pool.New(pool.Options{Name: "http", Size: size, Backlog: 1000, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Release(context.Background()) })
	return p
}

// TestHTTPLatencyIsARealLatency: a route that sleeps 200 ms, under clients half of whom give up
// after 100 ms. A request whose client has gone ends early, so its duration is no latency: the
// controller's estimate stays at or above the 200 ms every answered request took.
func TestHTTPLatencyIsARealLatency(t *testing.T) {
	p := newRealPool(t, 4)
	rec := &ticks{}
	h, err := NewHTTP(HTTPOptions{Bounds: Bounds{4, 4}, Pool: p, Resize: tune(p), Logger: slog.New(rec), CPUWait: noWait})
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, p, h, func(r chi.Router) { r.Get("/sleep", sleepFor(200*time.Millisecond)) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	patient := load(ctx, url+"/sleep", 2, 8, 5*time.Second)
	hasty := load(ctx, url+"/sleep", 2, 16, 100*time.Millisecond)
	now := time.Now()
	for i := range 8 {
		time.Sleep(250 * time.Millisecond)
		h.Tick(now.Add(time.Duration(i) * time.Second))
	}
	cancel()
	patient.Wait()
	hasty.Wait()
	got := rec.all()
	if len(got) == 0 {
		t.Fatal("no tick measured a latency")
	}
	for _, ms := range got {
		if ms < 200 {
			t.Fatalf("latency estimates %v ms: below the route's own 200 ms sleep", got)
		}
	}
}

// TestHTTPFastRouteDoesNotShrinkSlowOne: a client polls a route that answers at once, alone for a
// tick (a dashboard on an idle server), then 16 clients keep 8 threads busy on an I/O-bound route
// of 50 ms. Each route is measured against its own lowest latency, so the fast one is no baseline
// the slow one seems to have fallen behind.
func TestHTTPFastRouteDoesNotShrinkSlowOne(t *testing.T) {
	p := newRealPool(t, 8)
	h, err := NewHTTP(HTTPOptions{Bounds: Bounds{2, 8}, Pool: p, Resize: tune(p), Logger: quiet, CPUWait: noWait})
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, p, h, func(r chi.Router) {
		r.Get("/io", sleepFor(50*time.Millisecond))
		r.Get("/fast", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fast := load(ctx, url+"/fast", 1, 4000, 10*time.Second)
	now := time.Now()
	time.Sleep(300 * time.Millisecond)
	h.Tick(now)
	slow := load(ctx, url+"/io", 16, 400, 10*time.Second)
	var sizes []int
	for i := 1; i <= 10; i++ {
		time.Sleep(300 * time.Millisecond)
		h.Tick(now.Add(time.Duration(i) * time.Second))
		sizes = append(sizes, p.Size())
	}
	cancel()
	slow.Wait()
	fast.Wait()
	if last := sizes[len(sizes)-1]; last < 8 {
		t.Fatalf("sizes %v: an I/O-bound route lost its threads to a fast route's latency", sizes)
	}
}

// TestHTTPShrinksWhenIdle: with nothing waiting and at most half the threads busy for Quiet
// (30 s), the pool comes down to twice the most it used, at least min, in one step; busy again,
// it starts over.
func TestHTTPShrinksWhenIdle(t *testing.T) {
	p := &fakePool{size: 16}
	h, _ := NewHTTP(HTTPOptions{Bounds: Bounds{1, 64}, Pool: p, Resize: tune(p), Logger: quiet, CPUWait: noWait})
	now := time.Now()
	tick := func(from, to int, running int, requests bool) {
		for i := from; i <= to; i++ {
			p.running = running
			if requests {
				h.Observe("", 10*time.Millisecond)
			}
			h.Tick(now.Add(time.Duration(i) * time.Second))
		}
	}
	tick(0, 20, 3, true) // light use: 3 of 16 busy
	if p.size != 16 {
		t.Fatalf("shrank to %d before a quiet period passed", p.size)
	}
	tick(21, 31, 3, true)
	if p.size != 6 {
		t.Fatalf("size %d after 30 s with at most 3 of 16 busy, want 6", p.size)
	}
	tick(32, 70, 0, false) // nobody at all: no request, no tick with a latency
	if p.size != 1 {
		t.Fatalf("size %d after 30 s idle, want min 1", p.size)
	}
}

// TestHTTPGrowsWithTheQueue: flat latency, cores free, 60 requests waiting for 2 threads: the
// limit doubles in a tick rather than adding its square root.
func TestHTTPGrowsWithTheQueue(t *testing.T) {
	p := &fakePool{size: 2, running: 2, waiting: 60}
	h, _ := NewHTTP(HTTPOptions{Bounds: Bounds{1, 64}, Pool: p, Resize: tune(p), Logger: quiet, CPUWait: noWait})
	now := time.Now()
	h.Observe("", 10*time.Millisecond)
	h.Tick(now)
	if p.size != 4 {
		t.Fatalf("size %d after a tick with 60 requests waiting on 2 threads, want 4", p.size)
	}
}
