package store

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-run/tandem/jobs"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Sentinel errors about the file, which Open's callers branch on. The errors of operations on
// jobs are package jobs' (jobs.ErrNotFound and the rest): the store returns them, or wraps them.
var (
	// ErrLocked means another process holds the database file.
	ErrLocked = errors.New("database is locked by another process")
	// ErrNotTandem means the file is a database tandem did not create; it was left untouched.
	ErrNotTandem = errors.New("not a tandem database")
	// ErrCorrupt means the file is damaged or not a bbolt database at all. From Open, the file was
	// left untouched; from a later operation, that operation (a read, or a write's batch) failed.
	ErrCorrupt = errors.New("database file is damaged or not a database")
	// ErrSchemaVersion means the file was written by a newer tandem.
	ErrSchemaVersion = errors.New("database schema is newer than this tandem")
)

// The freelist settings, chosen with BenchmarkFreelist (20k jobs inserted, finished and swept, then
// inserts from 64 goroutines, fsync on, 2 cores; one run): insert cost per job array/sync 8.8 us,
// array/nosync 11.1, map/sync 11.5, map/nosync 10.2 -- within this machine's noise -- while
// NoFreelistSync made every Open rescan the file: 593-754 us against 110-202 us, growing with the
// file, and start-up must stay under 1 s with a million jobs. So the freelist is synced. The map
// type is kept for large files: its allocation does not grow with the number of free pages, where
// the array type's does (bbolt's own guidance). Variables only so the benchmark can switch them.
var (
	freelistType   = bolt.FreelistMapType
	noFreelistSync = false
)

// schemaVersion is the layout this code reads and writes.
const schemaVersion = 1

var (
	bucketMeta   = []byte("meta")
	bucketJobs   = []byte("jobs")
	bucketReady  = []byte("ready")
	bucketSched  = []byte("sched")
	bucketLease  = []byte("lease")
	bucketDone   = []byte("done")
	bucketUniq   = []byte("uniq")
	bucketCounts = []byte("counts")
	allBuckets   = [][]byte{bucketMeta, bucketJobs, bucketReady, bucketSched, bucketLease, bucketDone, bucketUniq, bucketCounts}
	keySchema    = []byte("schema")
	pausedPrefix = "paused:"
)

// Options configure a Store.
type Options struct {
	// Path is the database file. Required. Its directory is created when missing.
	Path string
	// OpenTimeout is the longest Open waits for another process's lock. Default 5s.
	OpenTimeout time.Duration
	// NoSync skips fsync on commit (store.sync: none). Unsafe: see the package's caveats.
	NoSync bool
	// MaxBatch is the most requests one transaction takes. Default 512: past it, commit time grew
	// faster than the batch on this 2-core disk (bench: BenchmarkInsertParallel64).
	MaxBatch int
	// Logger receives commit failures. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock for timestamps. Default time.Now.
	Now func() time.Time
	// OnCommit, when set, is called after each commit with its duration and request count.
	OnCommit func(d time.Duration, requests int)
}

// Store is an open database. Its methods are safe for concurrent use.
type Store struct {
	opts Options
	db   *bolt.DB

	reqs    chan *request
	stop    chan struct{}
	stopped chan struct{}
	closed  atomic.Bool
	closeMu sync.RWMutex // held for reading while sending a request, so Close can drain safely

	mu     sync.RWMutex
	counts map[string]map[jobs.State]int // mirror of the counts bucket, updated after each commit
	paused map[string]bool

	wb *writeback // the committer's, reused batch after batch

	commits, requests atomic.Uint64
	lastBatch         atomic.Int64
}

// request is one unit of work for the committer. fn must do all of its checks before its first
// write, so that returning an error leaves the transaction as it found it.
type request struct {
	fn   func(tx *txn) error
	done chan error
}

// Open opens or creates the database file and starts the committer goroutine; Close stops it.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Path == "" {
		return nil, errors.New("store: Options.Path is required")
	}
	opts.OpenTimeout = cmp.Or(opts.OpenTimeout, 5*time.Second)
	opts.MaxBatch = cmp.Or(opts.MaxBatch, 512)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := ensureDir(opts.Path); err != nil {
		return nil, err
	}
	fs, err := preflight(opts.Path)
	if err != nil {
		return nil, err
	}
	var db *bolt.DB
	err = guard(opts.Path, func() error {
		var err error
		db, err = bolt.Open(opts.Path, 0o600, &bolt.Options{
			Timeout:      opts.OpenTimeout,
			NoSync:       opts.NoSync,
			FreelistType: freelistType,
			// A file whose freelist is not stored keeps it so: otherwise bbolt would write one at
			// open, before init could refuse a file that is not tandem's.
			NoFreelistSync: noFreelistSync || fs.noFreelist,
		})
		return err
	})
	if err != nil {
		switch {
		case errors.Is(err, ErrCorrupt):
			return nil, err
		case errors.Is(err, bolterrors.ErrTimeout):
			return nil, fmt.Errorf("%w (waited %s for the file lock)", ErrLocked, opts.OpenTimeout)
		case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum),
			errors.Is(err, bolterrors.ErrVersionMismatch), errors.Is(err, bolterrors.ErrInvalidMapping):
			return nil, corrupt(opts.Path, "%v", err)
		}
		return nil, fmt.Errorf("store: open %s: %w", opts.Path, err)
	}
	s := &Store{
		opts: opts, db: db,
		reqs: make(chan *request, 4096), stop: make(chan struct{}), stopped: make(chan struct{}),
		counts: map[string]map[jobs.State]int{}, paused: map[string]bool{}, wb: newWriteback(),
	}
	if err := guard(opts.Path, func() error { return s.init(ctx, fs.existed) }); err != nil {
		db.Close()
		return nil, err
	}
	go s.commitLoop()
	return s, nil
}

func ensureDir(path string) error {
	dir := path[:max(0, len(path)-len(baseName(path)))]
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("store: create directory for %s: %w", path, err)
	}
	return nil
}

func baseName(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}

// init checks the file is ours (or new), creates the buckets of a new file, and loads the
// counters and paused queues. A foreign or damaged file is refused before anything is written.
// existed says the file held data before this Open.
func (s *Store) init(_ context.Context, existed bool) error {
	var fresh bool
	err := s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			any := false
			_ = tx.ForEach(func([]byte, *bolt.Bucket) error { any = true; return errStop })
			switch {
			case any:
				return ErrNotTandem
			case existed && tx.ID() > 1:
				// bbolt's new file has transaction 1; a later one committed something that is gone.
				return corrupt(s.opts.Path, "it holds no buckets, yet %d transactions were committed to it", tx.ID())
			}
			fresh = true
			return nil
		}
		v := meta.Get(keySchema)
		if len(v) != 4 {
			return ErrNotTandem
		}
		if n := binary.BigEndian.Uint32(v); n > schemaVersion {
			return fmt.Errorf("%w: file has %d, this tandem reads %d", ErrSchemaVersion, n, schemaVersion)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if fresh {
		err := s.db.Update(func(tx *bolt.Tx) error {
			for _, b := range allBuckets {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint32(nil, schemaVersion))
		})
		if err != nil {
			return fmt.Errorf("store: create buckets: %w", err)
		}
	}
	return s.db.View(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if tx.Bucket(b) == nil {
				return corrupt(s.opts.Path, "bucket %s is missing", b)
			}
			if err := checkEnds(tx.Bucket(b), b); err != nil {
				return corrupt(s.opts.Path, "%v", err)
			}
		}
		err := tx.Bucket(bucketCounts).ForEach(func(k, v []byte) error {
			q, st, ok := parseCountKey(k)
			if !ok || len(v) != 8 {
				return corrupt(s.opts.Path, "bad counter %q", k)
			}
			s.countsFor(q)[st] = int(binary.BigEndian.Uint64(v))
			return nil
		})
		if err != nil {
			return err
		}
		c := tx.Bucket(bucketMeta).Cursor()
		for k, _ := c.Seek([]byte(pausedPrefix)); k != nil && len(k) > len(pausedPrefix) && string(k[:len(pausedPrefix)]) == pausedPrefix; k, _ = c.Next() {
			s.paused[string(k[len(pausedPrefix):])] = true
		}
		return nil
	})
}

var errStop = errors.New("stop")

// countsFor returns the mirror's map for a queue, creating it; callers hold s.mu or are in init.
func (s *Store) countsFor(queue string) map[jobs.State]int {
	m := s.counts[queue]
	if m == nil {
		m = map[jobs.State]int{}
		s.counts[queue] = m
	}
	return m
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.opts.Path }

// Close stops the committer after the requests already sent, fails later ones with
// jobs.ErrStoreClosed, and
// closes the file.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed.Swap(true) {
		s.closeMu.Unlock()
		return nil
	}
	close(s.stop)
	s.closeMu.Unlock()
	<-s.stopped
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// exec sends fn to the committer and waits for its commit.
func (s *Store) exec(ctx context.Context, fn func(tx *txn) error) error {
	done, err := s.send(ctx, fn)
	if err != nil {
		return err
	}
	// Once sent, the request commits or fails as a whole; waiting for it (rather than for ctx)
	// means a caller never answers "failed" for a write that then lands.
	return <-done
}

// send queues fn for the committer and returns once it is queued. Requests commit in the order
// they were queued: one queued later lands in the same transaction or a later one.
func (s *Store) send(ctx context.Context, fn func(tx *txn) error) (<-chan error, error) {
	r := &request{fn: fn, done: make(chan error, 1)}
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed.Load() {
		return nil, jobs.ErrStoreClosed
	}
	select {
	case s.reqs <- r:
		return r.done, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// commitLoop is the committer: it takes the first waiting request, drains up to MaxBatch more,
// runs them in one transaction and commits once.
func (s *Store) commitLoop() {
	defer close(s.stopped)
	debug.SetPanicOnFault(true) // for run's recover: see guard
	batch := make([]*request, 0, s.opts.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case r := <-s.reqs:
			batch = append(batch, r)
		case <-s.stop:
			// Finish what was sent before Close.
			for {
				select {
				case r := <-s.reqs:
					batch = append(batch, r)
					if len(batch) == s.opts.MaxBatch {
						s.commit(batch)
						batch = batch[:0]
					}
				default:
					if len(batch) > 0 {
						s.commit(batch)
					}
					return
				}
			}
		}
		s.commit(s.drain(batch))
	}
}

// drain appends the requests waiting in the channel to batch, up to MaxBatch.
func (s *Store) drain(batch []*request) []*request {
	for len(batch) < s.opts.MaxBatch {
		select {
		case r := <-s.reqs:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// commit runs a batch in one transaction. When the commit itself fails, every request of the batch
// fails with that error: the file is as it was before the batch.
func (s *Store) commit(batch []*request) {
	start := time.Now()
	t, results, batch, err := s.run(batch)
	if err != nil {
		s.failAll(batch, err)
		return
	}
	s.mu.Lock()
	for q, m := range t.deltas {
		c := s.countsFor(q)
		for st, d := range m {
			c[st] += d
		}
	}
	for q, p := range t.pausedChanges {
		if p {
			s.paused[q] = true
		} else {
			delete(s.paused, q)
		}
	}
	s.mu.Unlock()
	// Counters first, so that a caller who saw its write commit sees it counted too.
	s.commits.Add(1)
	s.requests.Add(uint64(len(batch)))
	s.lastBatch.Store(int64(len(batch)))
	for i, r := range batch {
		r.done <- results[i]
	}
	if s.opts.OnCommit != nil {
		s.opts.OnCommit(time.Since(start), len(batch))
	}
}

// run runs the requests of a batch, and those that join it, in one read-write transaction and
// commits it. It returns the batch as it grew; on an error, the transaction was rolled back and
// every request of that batch fails with the error. A panic of bbolt (a damaged page, see guard) is
// such an error, wrapping ErrCorrupt: the committer goes on with the next batch.
func (s *Store) run(batch []*request) (t *txn, results []error, out []*request, err error) {
	out = batch
	tx, err := s.db.Begin(true)
	if err != nil {
		return nil, nil, out, fmt.Errorf("store: begin: %w", err)
	}
	defer func() {
		if v := recover(); v != nil {
			err = corrupt(s.opts.Path, "a transaction failed: %v", v)
			rollbackAfterPanic(tx)
			s.opts.Logger.Error("store: a transaction panicked, the file may be damaged; the batch was rolled back",
				"path", s.opts.Path, "requests", len(out), "err", err, "stack", string(debug.Stack()))
		}
	}()
	t = &txn{s: s, tx: tx, now: s.opts.Now(), deltas: map[string]map[jobs.State]int{}, wb: s.wb}
	defer s.wb.reset()
	results = make([]error, 0, len(out))
	for i := 0; i < len(out); i++ {
		err := out[i].fn(t)
		results = append(results, err)
		if errors.Is(err, errWrite) {
			// A write failed half-way: nothing of this batch can be trusted.
			_ = tx.Rollback()
			return nil, nil, out, err
		}
		if i == len(out)-1 {
			// Requests that arrived while this batch ran join it before the commit: above all
			// the acknowledgements of jobs it leased (LeaseQueued), which then cost no second
			// write of their records. The bigger batch also spreads one commit over more
			// requests; MaxBatch bounds it.
			out = s.drain(out)
		}
	}
	if err := t.flush(); err != nil {
		_ = tx.Rollback()
		return nil, nil, out, err
	}
	if err := t.flushCounts(); err != nil {
		_ = tx.Rollback()
		return nil, nil, out, err
	}
	if err := tx.Commit(); err != nil {
		err = fmt.Errorf("store: commit: %w", err)
		s.opts.Logger.Error("commit failed; the batch was rolled back", "requests", len(out), "err", err)
		return nil, nil, out, err
	}
	return t, results, out, nil
}

// rollbackAfterPanic rolls back a transaction a panic interrupted, when bbolt has not already.
func rollbackAfterPanic(tx *bolt.Tx) {
	defer func() { _ = recover() }() // its state is what panicked; the rollback is best effort
	_ = tx.Rollback()
}

func (s *Store) failAll(batch []*request, err error) {
	for _, r := range batch {
		r.done <- err
	}
}

// CommitStats are the committer's counters.
type CommitStats struct {
	Commits   uint64 // transactions committed
	Requests  uint64 // requests they carried
	LastBatch int    // requests in the last commit
	// PageBytes is the size of the pages the commits wrote (bbolt's TxStats.PageAlloc): what the
	// writes cost the file, whatever the number of records.
	PageBytes int64
}

// CommitStats returns the committer's counters.
func (s *Store) CommitStats() CommitStats {
	bs := s.db.Stats()
	return CommitStats{Commits: s.commits.Load(), Requests: s.requests.Load(), LastBatch: int(s.lastBatch.Load()),
		PageBytes: bs.TxStats.GetPageAlloc()}
}

// The Store is package jobs' backend.
var _ jobs.Store = (*Store)(nil)
