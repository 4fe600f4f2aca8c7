package jobs

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tandem-run/tandem/pool"
	"github.com/tandem-run/tandem/store"
)

// BenchmarkEndToEnd enqueues b.N noop jobs through the Go API from 64 goroutines, durably
// (fsync on; NOSYNC=1 in the environment turns it off, to see what fsync costs), and waits until
// every one succeeded, with 2 workers. Reports jobs/s end to end, and the committer's commits per
// job and requests per commit.
func BenchmarkEndToEnd(b *testing.B) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(context.Background(), store.Options{Path: filepath.Join(b.TempDir(), "db"), Logger: logger, NoSync: os.Getenv("NOSYNC") != ""})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	p, _ := pool.New(pool.Options{Name: "jobs", Size: 2, Backlog: pool.MaxBacklog, Logger: logger})
	defer p.Release(context.Background())
	rt, err := New(Options{Store: st, Pool: p, Logger: logger, Prefetch: 64})
	if err != nil {
		b.Fatal(err)
	}
	var done sync.WaitGroup
	_ = rt.RegisterFunc("noop", func(context.Context, *Job) (any, error) { done.Done(); return nil, nil })
	if err := rt.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer rt.Stop(context.Background())
	done.Add(b.N)
	b.ResetTimer()
	start := time.Now()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := rt.Enqueue(context.Background(), EnqueueParams{Kind: "noop"}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	done.Wait()
	// Wait for the last acknowledgements to be committed too.
	for st.Ready("default") > 0 || rt.inflightNow() > 0 {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
	cs := st.CommitStats()
	b.ReportMetric(float64(cs.Commits)/float64(b.N), "commits/job")
	b.ReportMetric(float64(cs.Requests)/float64(max(cs.Commits, 1)), "requests/commit")
}
