package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandem-run/tandem/jobs"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkFreelist compares bbolt's freelist settings on a file that has free pages (jobs
// inserted, finished and swept), with fsync on: insert throughput from 64 goroutines and the time
// to reopen the file. Run: go test -run XXX -bench Freelist ./store/
func BenchmarkFreelist(b *testing.B) {
	for _, ft := range []bolt.FreelistType{bolt.FreelistArrayType, bolt.FreelistMapType} {
		for _, nosync := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/nofreelistsync=%v", ft, nosync), func(b *testing.B) {
				oldT, oldS := freelistType, noFreelistSync
				freelistType, noFreelistSync = ft, nosync
				defer func() { freelistType, noFreelistSync = oldT, oldS }()
				path := filepath.Join(b.TempDir(), "db")
				s, err := Open(context.Background(), Options{Path: path})
				if err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				// 20k jobs finished and swept: free pages in the middle of the file.
				for range 20 {
					batch := make([]*jobs.Job, 1000)
					for i := range batch {
						batch[i] = newJob("q", 0, time.Time{})
						batch[i].State = jobs.StateReady
					}
					out, _, err := s.Insert(ctx, batch, nil)
					if err != nil {
						b.Fatal(err)
					}
					for _, j := range out {
						_, _ = s.Update(ctx, j.ID, func(j *jobs.Job) error {
							now := time.Now()
							j.State, j.FinishedAt = jobs.StateSucceeded, &now
							return nil
						})
					}
				}
				if _, err := s.Sweep(ctx, time.Now().Add(time.Hour), 500); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				b.SetParallelism(32)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, _, err := s.Insert(ctx, []*jobs.Job{newJob("q", 0, time.Time{})}, nil); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.StopTimer()
				s.Close()
				start := time.Now()
				s, err = Open(ctx, Options{Path: path})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(time.Since(start).Microseconds()), "open-us")
				s.Close()
			})
		}
	}
}
