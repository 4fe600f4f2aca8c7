package store

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// BenchmarkBboltFloor is the floor under the committer's cost per job: only the bbolt work one noop
// job needs, with nothing of tandem around it (no requests, no decoding, no counters). One
// goroutine, as bbolt allows one writer; per transaction, perJob new jobs are inserted (record and
// ready entry) and the jobs of the previous transaction are leased and finished at once (record
// read, ready entry deleted, record rewritten, done entry added), as the committer does when a
// lease and its acknowledgement share a commit. Records have the size of an encoded noop job.
// ns/op is per job; with sync the two fdatasyncs of each commit are included.
// Run: go test -run XXX -bench BboltFloor ./store/
func BenchmarkBboltFloor(b *testing.B) {
	j := newJob("default", 0, time.Time{})
	j.State = StateReady
	rec, _ := encodeJob(j)
	for _, perTx := range []int{20, 50, 100} {
		for _, nosync := range []bool{true, false} {
			b.Run(fmt.Sprintf("jobs_per_commit=%d/nosync=%v", perTx, nosync), func(b *testing.B) {
				db, err := bolt.Open(filepath.Join(b.TempDir(), "db"), 0o600, &bolt.Options{
					NoSync: nosync, FreelistType: freelistType, NoFreelistSync: noFreelistSync,
				})
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				buckets := [][]byte{bucketJobs, bucketReady, bucketDone}
				if err := db.Update(func(tx *bolt.Tx) error {
					for _, name := range buckets {
						if _, err := tx.CreateBucket(name); err != nil {
							return err
						}
					}
					return nil
				}); err != nil {
					b.Fatal(err)
				}
				type entry struct{ id, ready []byte }
				var prev []entry // jobs inserted by the previous transaction
				b.ResetTimer()
				for done := 0; done < b.N; done += perTx {
					err := db.Update(func(tx *bolt.Tx) error {
						jobs, ready, fin := tx.Bucket(bucketJobs), tx.Bucket(bucketReady), tx.Bucket(bucketDone)
						now := time.Now()
						for _, e := range prev { // lease and finish
							if v := jobs.Get(e.id); v == nil {
								return fmt.Errorf("job %x missing", e.id)
							}
							if err := ready.Delete(e.ready); err != nil {
								return err
							}
							if err := jobs.Put(e.id, rec); err != nil {
								return err
							}
							if err := fin.Put(timeIDKey(now, e.id), nil); err != nil {
								return err
							}
						}
						prev = prev[:0]
						for range perTx { // enqueue
							u, err := uuid.NewV7()
							if err != nil {
								return err
							}
							e := entry{id: u[:], ready: readyKey("default", 0, now, u[:])}
							if err := jobs.Put(e.id, rec); err != nil {
								return err
							}
							if err := ready.Put(e.ready, nil); err != nil {
								return err
							}
							prev = append(prev, e)
						}
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
