package postgres_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/store/postgres"
)

// BenchmarkInsertLeaseAck measures a job's whole life in the store, per job: 64 goroutines insert
// one job each per Insert (as 64 HTTP clients would), while two leasers take up to 64 at a time
// and acknowledge each with its own UpdateQueued, as the runtime does. With replicas=2 the
// leasers use a second Store on the same database.
func BenchmarkInsertLeaseAck(b *testing.B) {
	for _, replicas := range []int{1, 2} {
		b.Run(map[int]string{1: "replicas=1", 2: "replicas=2"}[replicas], func(b *testing.B) {
			url := tandemtest.Postgres(b)
			var commits, requests atomic.Int64
			count := func(o *postgres.Options) {
				o.OnCommit = func(_ time.Duration, n int) { commits.Add(1); requests.Add(int64(n)) }
			}
			ins := open(b, url, count)
			leasers := []*postgres.Store{ins, ins}
			if replicas == 2 {
				other := open(b, url, count)
				leasers = []*postgres.Store{ins, other}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var acked atomic.Int64
			var wg sync.WaitGroup
			for _, s := range leasers {
				wg.Go(func() {
					for ctx.Err() == nil && acked.Load() < int64(b.N) {
						js, wait, err := s.LeaseQueued(ctx, jobs.Lease{Queue: "bench", N: 64, For: time.Minute})
						if err != nil {
							return
						}
						waits := make([]func() (*jobs.Job, error), 0, len(js))
						for _, j := range js {
							w, err := s.UpdateQueued(ctx, j.ID, func(j *jobs.Job) error {
								now := time.Now()
								j.State, j.FinishedAt, j.LeaseUntil = jobs.StateSucceeded, &now, nil
								return nil
							})
							if err != nil {
								return
							}
							waits = append(waits, w)
						}
						if err := wait(); err != nil {
							b.Error(err)
							return
						}
						for _, w := range waits {
							if _, err := w(); err != nil {
								b.Error(err)
								return
							}
							acked.Add(1)
						}
						if len(js) == 0 {
							select {
							case <-s.Changes():
							case <-time.After(time.Millisecond):
							}
						}
					}
				})
			}
			commits.Store(0)
			requests.Store(0)
			b.ResetTimer()
			b.SetParallelism(32) // 64 inserting goroutines on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := ins.Insert(ctx, []*jobs.Job{{Kind: "noop", Queue: "bench", State: jobs.StateReady, MaxAttempts: 1, RunAt: time.Now()}}, nil); err != nil {
						b.Error(err)
						return
					}
				}
			})
			deadline := time.Now().Add(time.Minute)
			for acked.Load() < int64(b.N) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			cancel()
			wg.Wait()
			if acked.Load() < int64(b.N) {
				b.Fatalf("acked %d of %d in a minute", acked.Load(), b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
			if c := commits.Load(); c > 0 {
				b.ReportMetric(float64(requests.Load())/float64(c), "requests/commit")
			}
		})
	}
}
