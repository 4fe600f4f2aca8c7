package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/pool"
)

// populated returns metrics with 10 queues and 20 kinds of job events recorded.
func populated(tb testing.TB) *Metrics {
	m := New(Options{})
	p1, _ := pool.New(pool.Options{Name: "http", Size: 5})
	p2, _ := pool.New(pool.Options{Name: "jobs", Size: 2})
	tb.Cleanup(func() { p1.Release(context.Background()); p2.Release(context.Background()) })
	m.RegisterPools(p1, p2)
	var qs []jobs.QueueStats
	for q := range 10 {
		counts := map[jobs.State]int{}
		for i, st := range jobs.States {
			counts[st] = q*10 + i
		}
		qs = append(qs, jobs.QueueStats{Name: fmt.Sprintf("q%d", q), Counts: counts, OldestReady: time.Now().Add(-time.Minute)})
		for k := range 20 {
			j := &jobs.Job{Queue: fmt.Sprintf("q%d", q), Kind: fmt.Sprintf("k%d", k), State: jobs.StateSucceeded}
			o := m.JobsObserver()
			o.Enqueued(j.Queue, j.Kind, 1)
			o.Started(j, time.Millisecond)
			o.Finished(j, time.Millisecond)
		}
	}
	m.RegisterQueues(func(context.Context) ([]jobs.QueueStats, error) { return qs, nil })
	return m
}

func TestScrapeHasFamilies(t *testing.T) {
	m := populated(t)
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	body := w.Body.String()
	for _, want := range []string{`tandem_queue_ready_jobs{queue="q9"} 91`, `tandem_jobs_finished_total{kind="k19",queue="q9",state="succeeded"} 1`,
		`tandem_pool_size{pool="jobs"} 2`, `tandem_queue_jobs{queue="q0",state="prefetched"} 2`,
		`tandem_queue_jobs{queue="q0",state="running"} 3`, `tandem_queue_jobs{queue="q0",state="canceled"} 7`} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
}

// TestLimitsChangesCounted: each followed change of the limits is one count under its limit, and a
// pool resized for it counts under by="limits".
func TestLimitsChangesCounted(t *testing.T) {
	m := New(Options{})
	m.LimitsChanged("cpu")
	m.LimitsChanged("cpu")
	m.LimitsChanged("memory")
	m.Resized("http", "limits", 5, 3)
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{`tandem_limits_changes_total{limit="cpu"} 2`, `tandem_limits_changes_total{limit="memory"} 1`,
		`tandem_pool_resizes_total{by="limits",direction="down",pool="http"} 1`} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
}

// BenchmarkScrape: one /metrics scrape with 10 queues and 20 kinds (target under 5 ms), the way
// Prometheus does it: over loopback HTTP, plain text or gzip (Prometheus asks for gzip).
func BenchmarkScrape(b *testing.B) {
	m := populated(b)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	for _, enc := range []string{"identity", "gzip"} {
		b.Run(enc, func(b *testing.B) {
			var size int64
			for b.Loop() {
				req, _ := http.NewRequest("GET", srv.URL, nil)
				req.Header.Set("Accept-Encoding", enc)
				resp, err := srv.Client().Transport.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				size, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
			b.ReportMetric(float64(size), "bytes/scrape")
		})
	}
}

// BenchmarkMiddleware: /demo/hello's cost through a chi router with and without the metrics
// middleware, 64 callers.
func BenchmarkMiddleware(b *testing.B) {
	r := chi.NewRouter()
	r.Get("/demo/hello", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello from tandem\n") })
	m := New(Options{})
	seeded := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), chi.RouteCtxKey, chi.NewRouteContext())))
		})
	}
	for name, h := range map[string]http.Handler{"off": seeded(r), "on": seeded(m.Middleware(r))} {
		b.Run(name, func(b *testing.B) {
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				req := httptest.NewRequest("GET", "/demo/hello", nil)
				for pb.Next() {
					h.ServeHTTP(httptest.NewRecorder(), req)
				}
			})
		})
	}
}

// TestPeriodicCounters: the jobs observer counts the periodic slots fired and skipped, per schedule.
func TestPeriodicCounters(t *testing.T) {
	m := New(Options{})
	po, ok := m.JobsObserver().(jobs.PeriodicObserver)
	if !ok {
		t.Fatal("the jobs observer does not count periodic slots")
	}
	po.PeriodicFired("nightly")
	po.PeriodicFired("nightly")
	po.PeriodicSkipped("nightly", 3)
	po.PeriodicFired("hourly")
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{`tandem_periodic_fired_total{name="nightly"} 2`, `tandem_periodic_skipped_total{name="nightly"} 3`,
		`tandem_periodic_fired_total{name="hourly"} 1`} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
}
