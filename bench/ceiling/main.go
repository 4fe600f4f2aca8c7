// Command ceiling is the ceiling of the HTTP job benchmarks (bench/jobs.sh). Driven by the same
// load generator as tandem, its rates say how much of this machine tandem's J1 figures use.
//
// Without -db it answers every request with 201 and a constant job-sized JSON body, with nothing
// but net/http: no router, no store, no fsync. Its rate is the most requests per second this
// machine serves over loopback.
//
// With -db it is the simplest durable queue on bbolt: each request's job record and a ready entry
// are put by one committer goroutine that drains every request waiting into one transaction and
// one commit (fsync on, as tandem's store.sync: always), and the 201 goes out after the commit.
// With -drain N the same commit also takes up to N ready jobs and writes them finished, as if
// leased, run and acknowledged at once; tandem needs a lease and an acknowledgement, so this is
// kinder than any real queue. No validation, no counters, no HTTP router: what is left is the
// floor of the work one durable job needs, bbolt's plus net/http's. -shards N spreads the jobs over
// N files, each with its own committer, to see whether fsyncs of several files overlap.
//
// With -db and -jobs N there is no HTTP: 64 goroutines enqueue N jobs, one a call, as J1's 64
// clients do, and the rates are printed; this is the floor of tandem's in-process benchmark.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// answer is the size and shape of tandem's answer to POST /v1/jobs.
const answer = `{"id":"019ac1d2-0000-7000-8000-000000000000","kind":"noop","queue":"default","priority":0,` +
	`"run_at":"2026-11-28T12:00:00.123456789Z","attempt":0,"max_attempts":25,"state":"ready",` +
	`"created_at":"2026-11-28T12:00:00.123456789Z","updated_at":"2026-11-28T12:00:00.123456789Z","timeout":"30m0s"}` + "\n"

var (
	bucketJobs  = []byte("jobs")
	bucketReady = []byte("ready")
)

// request is one enqueue waiting for its commit.
type request struct {
	id   uuid.UUID
	done chan error
}

func main() {
	addr := flag.String("addr", "127.0.0.1:18082", "listen address (loopback)")
	path := flag.String("db", "", "bbolt files PATH.0, PATH.1...: enqueue durably (empty: answer a constant 201)")
	drain := flag.Int("drain", 0, "with -db, ready jobs each commit also finishes")
	shards := flag.Int("shards", 1, "with -db, bbolt files, each with its own committer, that requests take in turn")
	inProcess := flag.Int("jobs", 0, "with -db, enqueue this many jobs from 64 goroutines in this process, print the rates and exit (no HTTP)")
	flag.Parse()
	if *path == "" {
		log.Fatal(http.ListenAndServe(*addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, answer)
		})))
	}
	var finished, commits atomic.Int64
	shardReqs := make([]chan *request, *shards)
	for i := range shardReqs {
		db, err := openShard(fmt.Sprintf("%s.%d", *path, i))
		if err != nil {
			log.Fatal(err)
		}
		shardReqs[i] = make(chan *request, 4096)
		go commitLoop(db, shardReqs[i], *drain, &finished, &commits)
	}
	var turn atomic.Uint64
	enqueue := func() error {
		id, err := uuid.NewV7()
		if err != nil {
			return err
		}
		req := &request{id: id, done: make(chan error, 1)}
		shardReqs[turn.Add(1)%uint64(len(shardReqs))] <- req
		return <-req.done
	}
	if *inProcess > 0 {
		runInProcess(enqueue, *inProcess, &finished, &commits)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/jobs", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if err := enqueue(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, answer)
	})
	// GET /finished is how many jobs -drain finished, for the end-to-end rate, and how many commits.
	mux.HandleFunc("GET /finished", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, finished.Load(), commits.Load())
	})
	// GET /v1/queues answers in tandem's shape, its succeeded count being the finished jobs, so
	// bench/load -drain measures this queue end to end as it measures tandem's.
	mux.HandleFunc("GET /v1/queues", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"queues":[{"name":"default","succeeded":%d}]}`+"\n", finished.Load())
	})
	log.Fatal(http.ListenAndServe(*addr, mux))
}

// openShard opens one bbolt file with tandem's options and its two buckets.
func openShard(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType}) // tandem's: map freelist, synced
	if err != nil {
		return nil, err
	}
	return db, db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketJobs, bucketReady} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
}

// runInProcess enqueues n jobs from 64 goroutines, one job a call, as J1's 64 clients do, and
// prints the enqueue rate and, once -drain finished them all, the end-to-end rate.
func runInProcess(enqueue func() error, n int, finished, commits *atomic.Int64) {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if err := enqueue(); err != nil {
					log.Fatal(err)
				}
			}
		}()
	}
	wg.Wait()
	enqueued := time.Since(start)
	for i := 0; i < 60_000 && finished.Load() < int64(n); i++ { // at most a minute
		time.Sleep(time.Millisecond)
	}
	fmt.Printf("enqueue %.0f/s, end to end %.0f/s (%d finished), %.1f jobs a commit\n",
		float64(n)/enqueued.Seconds(), float64(finished.Load())/time.Since(start).Seconds(), finished.Load(),
		float64(n)/float64(commits.Load()))
}

// commitLoop commits every request waiting, plus up to drain ready jobs finished, in one
// transaction, then answers them.
func commitLoop(db *bolt.DB, reqs <-chan *request, drain int, finished, commits *atomic.Int64) {
	record := bytes.Repeat([]byte("r"), 200) // about the size of tandem's encoded record
	done := bytes.Repeat([]byte("d"), 220)
	batch := make([]*request, 0, 1024)
	waiting := 0 // ready jobs in the file
	for {
		batch = batch[:0]
		if drain == 0 || waiting == 0 {
			batch = append(batch, <-reqs) // nothing to drain: sleep until a request comes
		}
	more:
		for len(batch) < cap(batch) {
			select {
			case r := <-reqs:
				batch = append(batch, r)
			default:
				break more
			}
		}
		n := 0
		err := db.Update(func(tx *bolt.Tx) error {
			jobs, ready := tx.Bucket(bucketJobs), tx.Bucket(bucketReady)
			// Finish the oldest ready jobs first, as a dispatcher would lease them.
			var ids [][]byte
			c := ready.Cursor()
			for k, _ := c.First(); k != nil && len(ids) < drain; k, _ = c.Next() {
				ids = append(ids, append([]byte(nil), k...))
			}
			for _, id := range ids {
				if err := ready.Delete(id); err != nil {
					return err
				}
				if err := jobs.Put(id, done); err != nil {
					return err
				}
			}
			n = len(ids)
			for _, r := range batch {
				if err := jobs.Put(r.id[:], record); err != nil {
					return err
				}
				if err := ready.Put(r.id[:], nil); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			finished.Add(int64(n))
			commits.Add(1)
			waiting += len(batch) - n
		}
		for _, r := range batch {
			r.done <- err
		}
	}
}
