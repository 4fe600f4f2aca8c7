package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/tandem-run/tandem/pool"
)

// nopWriter is a ResponseWriter that costs nothing, so the benchmarks measure admission.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

// BenchmarkAdmission compares the cost per request of admission strategies around /demo/hello
// with 64 concurrent callers (b.SetParallelism), the H1 shape:
//
//	none       the chi router alone
//	tandem     tandem's whole main-listener stack: request id, body limit, admission (pool slot,
//	           handler inline, timeout context)
//	unadmitted the same stack without the threads pool (Options.Threads nil): H1's baseline
//	tandem_info_log  tandem at the default log level (info, log.access errors): what deciding
//	           per request whether to write an access line costs
//	ants       the pool's gate with the handler handed to an ants worker (pool.Do): the design
//	           first tried, 25% slower on H1 over loopback
//	gate       the pool's gate alone, handler inline
//	chansem    a buffered-channel semaphore, handler inline
func BenchmarkAdmission(b *testing.B) {
	logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
	p, err := pool.New(pool.Options{Name: "http", Size: 64, Backlog: 4096, Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Release(context.Background())
	srv, err := New(Options{Threads: p, DemoRoutes: true, Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	unadmitted, err := New(Options{DemoRoutes: true, Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	// At the default log level: the access log decides per request whether to write a line.
	infoLog, err := New(Options{Threads: p, DemoRoutes: true, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	plain := chi.NewRouter()
	plain.Get("/demo/hello", demoHello)
	sem := make(chan struct{}, 64)
	variants := []struct {
		name string
		h    http.Handler
	}{
		{"none", plain},
		{"tandem", srv.Handler()},
		{"unadmitted", unadmitted.Handler()},
		{"tandem_info_log", infoLog.Handler()},
		{"ants", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := p.Do(r.Context(), func() { plain.ServeHTTP(w, r) }); err != nil {
				w.WriteHeader(503)
			}
		})},
		{"gate", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			release, err := p.Acquire(r.Context())
			if err != nil {
				w.WriteHeader(503)
				return
			}
			defer release()
			plain.ServeHTTP(w, r)
		})},
		{"chansem", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sem <- struct{}{}
			defer func() { <-sem }()
			plain.ServeHTTP(w, r)
		})},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			b.SetParallelism(32) // x GOMAXPROCS(2) = 64 callers
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req := httptest.NewRequest(http.MethodGet, "/demo/hello", nil)
				w := &nopWriter{h: http.Header{}}
				for pb.Next() {
					v.h.ServeHTTP(w, req)
				}
			})
		})
	}
}
