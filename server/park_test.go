package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/tandem-run/tandem/internal/tandemtest"
	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/pool"
	"github.com/tandem-run/tandem/store"
)

// parkSetup is setup with one thread, no backlog (a request that finds the thread taken gets 503
// at once) and maxParked, and a route /wait whose handler waits in pool.Wait until gate closes.
func parkSetup(t *testing.T, maxParked int, gate <-chan struct{}) *bundle {
	t.Helper()
	b := setup(t, nil, func(r chi.Router) {
		r.Get("/wait", func(w http.ResponseWriter, r *http.Request) {
			pool.Wait(r.Context(), func() { <-gate })
			_, _ = io.WriteString(w, "waited\n")
		})
	})
	if _, err := b.threads.Tune(1); err != nil {
		t.Fatal(err)
	}
	if _, err := b.threads.SetBacklog(0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.threads.SetMaxParked(maxParked); err != nil {
		t.Fatal(err)
	}
	return b
}

// getAsync sends GET path in the background and reports its status.
func (b *bundle) getAsync(t *testing.T, path string) <-chan int {
	codes := make(chan int, 1)
	go func() {
		resp, err := b.client.Get(b.base + path)
		if err != nil {
			t.Errorf("GET %s: %v", path, err)
			codes <- 0
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes <- resp.StatusCode
	}()
	return codes
}

// A handler blocked in pool.Wait holds no thread: with one thread and no backlog, another request
// is served meanwhile instead of shed; the waiting one answers once its wait ends.
func TestWaitingRequestHoldsNoThread(t *testing.T) {
	gate := make(chan struct{})
	b := parkSetup(t, 8, gate)
	waiting := b.getAsync(t, "/wait")
	tandemtest.WaitFor(t, "the request parked", func() bool { return b.threads.Parked() == 1 })
	if code, _, body := b.do(t, "GET", b.base+"/demo/hello", "", nil); code != http.StatusOK {
		t.Fatalf("a request while the only thread's holder waits: %d %s, want 200", code, body)
	}
	close(gate)
	if code := <-waiting; code != http.StatusOK {
		t.Fatalf("the waiting request: %d, want 200", code)
	}
	if st := b.threads.Stats(); st.Running != 0 || st.Parked != 0 {
		t.Errorf("after both: running %d parked %d, want 0 and 0", st.Running, st.Parked)
	}
}

// Parking is bounded by the pool's MaxParked: past it a waiting request keeps its thread, and the
// next request is shed as before.
func TestWaitingRequestsParkedAtMostMaxParked(t *testing.T) {
	gate := make(chan struct{})
	b := parkSetup(t, 1, gate)
	first := b.getAsync(t, "/wait")
	tandemtest.WaitFor(t, "the first request parked", func() bool { return b.threads.Parked() == 1 })
	second := b.getAsync(t, "/wait")
	tandemtest.WaitFor(t, "the second request on the thread", func() bool { return b.threads.Running() == 1 })
	if code, _, _ := b.do(t, "GET", b.base+"/demo/hello", "", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("a request while one waits parked and one waits on the thread: %d, want 503", code)
	}
	if got := b.threads.Parked(); got != 1 {
		t.Errorf("Parked() = %d, want 1 (the limit)", got)
	}
	close(gate)
	for _, c := range []<-chan int{first, second} {
		if code := <-c; code != http.StatusOK {
			t.Errorf("a waiting request: %d, want 200", code)
		}
	}
}

// Shutdown drains parked requests like any request in flight: it returns only after they
// answered, and they answer 200.
func TestShutdownWaitsForParkedRequests(t *testing.T) {
	gate := make(chan struct{})
	b := parkSetup(t, 8, gate)
	waiting := b.getAsync(t, "/wait")
	tandemtest.WaitFor(t, "the request parked", func() bool { return b.threads.Parked() == 1 })
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- b.srv.Shutdown(ctx)
	}()
	tandemtest.WaitFor(t, "the listener closed", func() bool {
		c, err := net.DialTimeout("tcp", b.srv.Addr(), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned while a parked request was in flight: %v", err)
	default:
	}
	close(gate)
	if code := <-waiting; code != http.StatusOK {
		t.Fatalf("the parked request during the drain: %d, want 200", code)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// gatedStore holds every Insert until gate closes, as a slow group commit would.
type gatedStore struct {
	jobs.Store
	gate <-chan struct{}
}

func (s gatedStore) Insert(ctx context.Context, js []*jobs.Job, maxPending func(string) int) ([]*jobs.Job, []bool, error) {
	<-s.gate
	return s.Store.Insert(ctx, js, maxPending)
}

// An enqueue waiting for its commit holds no thread: POST /v1/jobs lends its thread back during
// the store's Insert (jobs.Runtime.EnqueueBatch waits in pool.Wait), answers 201 once it is in.
func TestEnqueueWaitingOnCommitHoldsNoThread(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	threads, err := pool.New(pool.Options{Name: "http", Size: 1, MaxParked: 8, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), store.Options{Path: filepath.Join(t.TempDir(), "db"), NoSync: true, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	jp, _ := pool.New(pool.Options{Name: "jobs", Size: 1, Backlog: 1000, Logger: logger})
	rt, err := jobs.New(jobs.Options{Store: gatedStore{st, gate}, Pool: jp, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	_ = rt.RegisterFunc("noop", func(context.Context, *jobs.Job) (any, error) { return nil, nil })
	if err := rt.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Threads: threads, Jobs: rt, DemoRoutes: true, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	b := &bundle{srv: srv, threads: threads, base: "http://" + srv.Addr(), client: &http.Client{Timeout: 10 * time.Second}}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		b.client.CloseIdleConnections()
		_ = rt.Stop(ctx)
		_ = threads.Release(ctx)
		_ = jp.Release(ctx)
		st.Close()
	})
	created := make(chan int, 1)
	go func() {
		resp, err := b.client.Post(b.base+"/v1/jobs", "application/json", strings.NewReader(`{"kind":"noop"}`))
		if err != nil {
			t.Errorf("POST /v1/jobs: %v", err)
			created <- 0
			return
		}
		resp.Body.Close()
		created <- resp.StatusCode
	}()
	tandemtest.WaitFor(t, "the enqueue parked on its commit", func() bool { return threads.Parked() == 1 })
	if code, _, body := b.do(t, "GET", b.base+"/demo/hello", "", nil); code != http.StatusOK {
		t.Fatalf("a request while the enqueue waits for its commit: %d %s, want 200", code, body)
	}
	close(gate)
	if code := <-created; code != http.StatusCreated {
		t.Fatalf("the enqueue: %d, want 201", code)
	}
}
