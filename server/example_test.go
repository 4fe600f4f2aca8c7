package server_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"

	"github.com/go-chi/chi/v5"
	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/pool"
	"github.com/tandem-run/tandem/server"
	"github.com/tandem-run/tandem/store"
)

// A Go program serves its own routes behind the threads pool, beside the job API, and enqueues
// from a handler. cmd_serve.go composes the binary the same way.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "tandem-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	st, err := store.Open(ctx, store.Options{Path: filepath.Join(dir, "tandem.db")})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	workers, err := pool.New(pool.Options{Name: "jobs", Size: 2, Backlog: pool.MaxBacklog})
	if err != nil {
		log.Fatal(err)
	}
	defer workers.Release(ctx)
	rt, err := jobs.New(jobs.Options{Store: st, Pool: workers})
	if err != nil {
		log.Fatal(err)
	}
	_ = rt.RegisterFunc("thumbnail", func(ctx context.Context, j *jobs.Job) (any, error) { return nil, nil })
	if err := rt.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer rt.Stop(ctx)

	// The threads knob: 8 requests in flight, 64 more may wait for a thread, the rest get 503.
	threads, err := pool.New(pool.Options{Name: "http", Size: 8, Backlog: 64})
	if err != nil {
		log.Fatal(err)
	}
	defer threads.Release(ctx)
	srv, err := server.New(server.Options{
		Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", // the example picks free ports
		Threads: threads, Pools: map[string]*pool.Pool{"http": threads, "jobs": workers}, Jobs: rt,
	})
	if err != nil {
		log.Fatal(err)
	}
	// Routes added to Router run behind admission, like the job API under /v1.
	srv.Router().Post("/photos/{name}", func(w http.ResponseWriter, r *http.Request) {
		_, _, err := rt.Enqueue(r.Context(), jobs.EnqueueParams{Kind: "thumbnail", UniqueKey: chi.URLParam(r, "name")})
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintln(w, "thumbnail queued")
	})
	if err := srv.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown(ctx)
	srv.SetReady(true)

	resp, err := http.Post("http://"+srv.Addr()+"/photos/cat.jpg", "", nil)
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(resp.StatusCode, " ", string(body))
	// Output: 202 thumbnail queued
}
