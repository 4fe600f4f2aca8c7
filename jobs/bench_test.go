package jobs_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tandem-run/tandem/jobs"

	"github.com/tandem-run/tandem/pool"
	"github.com/tandem-run/tandem/store"
)

// BenchmarkEndToEnd enqueues b.N noop jobs through the Go API from 64 goroutines, one job a call,
// durably (fsync on; NOSYNC=1 in the environment turns it off, to see what fsync costs), and waits
// until every one succeeded, with 2 workers. Reports jobs/s end to end, and the committer's
// commits per job and requests per commit.
func BenchmarkEndToEnd(b *testing.B) { endToEnd(b, 1) }

// BenchmarkEndToEndBatch is BenchmarkEndToEnd with EnqueueBatch of 100 jobs a call, the Go API's
// counterpart of POST /v1/jobs/batch.
func BenchmarkEndToEndBatch(b *testing.B) { endToEnd(b, 100) }

func endToEnd(b *testing.B, batch int) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(context.Background(), store.Options{Path: filepath.Join(b.TempDir(), "db"), Logger: logger, NoSync: os.Getenv("NOSYNC") != ""})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	p, _ := pool.New(pool.Options{Name: "jobs", Size: 2, Backlog: pool.MaxBacklog, Logger: logger})
	defer p.Release(context.Background())
	rt, err := jobs.New(jobs.Options{Store: st, Pool: p, Logger: logger, Prefetch: prefetchForBench(), MaxPending: 10_000_000})
	if err != nil {
		b.Fatal(err)
	}
	var done sync.WaitGroup
	_ = rt.RegisterFunc("noop", func(context.Context, *jobs.Job) (any, error) { done.Done(); return nil, nil })
	if err := rt.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer rt.Stop(context.Background())
	done.Add(b.N)
	b.ResetTimer()
	start := time.Now()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		ps := make([]jobs.EnqueueParams, 0, batch)
		for more := true; more; {
			more = pb.Next()
			if more {
				ps = append(ps, jobs.EnqueueParams{Kind: "noop"})
			}
			if len(ps) == batch || (!more && len(ps) > 0) {
				if _, _, err := rt.EnqueueBatch(context.Background(), ps); err != nil {
					b.Error(err)
					done.Add(-len(ps)) // they will never run: do not wait for them
				}
				ps = ps[:0]
			}
		}
	})
	done.Wait()
	// Wait for the last acknowledgements to be committed too.
	for st.Ready("default") > 0 || rt.Inflight() > 0 {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
	cs := st.CommitStats()
	b.ReportMetric(float64(cs.Commits)/float64(b.N), "commits/job")
	b.ReportMetric(float64(cs.Requests)/float64(max(cs.Commits, 1)), "requests/commit")
	b.ReportMetric(float64(cs.PageBytes)/float64(b.N), "page-bytes/job")
}

func prefetchForBench() int {
	if n, err := strconv.Atoi(os.Getenv("PREFETCH")); err == nil {
		return n
	}
	return 64
}
