package store

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandem-run/tandem/jobs"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// BenchmarkBboltFloor is the floor under the committer's cost per job: only the bbolt work one noop
// job needs, with nothing of tandem around it (no requests, no decoding, no counters). One
// goroutine, as bbolt allows one writer; each transaction inserts perTx jobs (record and ready
// entry) and moves the jobs of earlier transactions on. Records have the size of an encoded noop
// job. ns/op is per job; with sync the two fdatasyncs of each commit are included. Layouts:
//
//   - merged: a job is leased and finished in the commit after its insert (record read, ready
//     entry deleted, record rewritten, done entry added): two record writes a job.
//   - split: leased in the next commit (record rewritten, ready entry deleted, lease entry added)
//     and finished in the one after (record rewritten, lease entry deleted, done entry added):
//     three record writes, which is what tandem's committer does for nearly every job.
//   - lease_entry: as split, but the lease writes only its lease entry (holding the attempt), not
//     the record: two record writes and the index work of split.
//
// Run: go test -run XXX -bench BboltFloor ./store/
func BenchmarkBboltFloor(b *testing.B) {
	j := newJob("default", 0, time.Time{})
	j.State = jobs.StateReady
	rec, _ := encodeJob(j)
	for _, layout := range []string{"merged", "split", "lease_entry"} {
		for _, perTx := range []int{20, 50, 100} {
			for _, nosync := range []bool{true, false} {
				b.Run(fmt.Sprintf("%s/jobs_per_commit=%d/nosync=%v", layout, perTx, nosync), func(b *testing.B) {
					floor(b, layout, perTx, nosync, rec)
				})
			}
		}
	}
}

type floorJob struct{ id, ready, lease []byte }

func floor(b *testing.B, layout string, perTx int, nosync bool, rec []byte) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "db"), 0o600, &bolt.Options{
		NoSync: nosync, FreelistType: freelistType, NoFreelistSync: noFreelistSync,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketJobs, bucketReady, bucketLease, bucketDone} {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	var inserted, leased []floorJob // by the previous transaction
	b.ResetTimer()
	for done := 0; done < b.N; done += perTx {
		err := db.Update(func(tx *bolt.Tx) error {
			jb, ready, lease, fin := tx.Bucket(bucketJobs), tx.Bucket(bucketReady), tx.Bucket(bucketLease), tx.Bucket(bucketDone)
			now := time.Now()
			for _, e := range leased { // finish (split, lease_entry)
				if err := lease.Delete(e.lease); err != nil {
					return err
				}
				if err := jb.Put(e.id, rec); err != nil {
					return err
				}
				if err := fin.Put(timeIDKey(now, e.id), nil); err != nil {
					return err
				}
			}
			leased = leased[:0]
			for _, e := range inserted { // lease (and finish, when merged)
				if v := jb.Get(e.id); v == nil {
					return fmt.Errorf("job %x missing", e.id)
				}
				if err := ready.Delete(e.ready); err != nil {
					return err
				}
				if layout == "merged" {
					if err := jb.Put(e.id, rec); err != nil {
						return err
					}
					if err := fin.Put(timeIDKey(now, e.id), nil); err != nil {
						return err
					}
					continue
				}
				if layout == "split" {
					if err := jb.Put(e.id, rec); err != nil {
						return err
					}
				}
				e.lease = timeIDKey(now.Add(time.Minute), e.id)
				if err := lease.Put(e.lease, []byte{1}); err != nil {
					return err
				}
				leased = append(leased, e)
			}
			inserted = inserted[:0]
			for range perTx { // enqueue
				u, err := uuid.NewV7()
				if err != nil {
					return err
				}
				e := floorJob{id: u[:], ready: readyKey("default", 0, now, u[:])}
				if err := jb.Put(e.id, rec); err != nil {
					return err
				}
				if err := ready.Put(e.ready, nil); err != nil {
					return err
				}
				inserted = append(inserted, e)
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
