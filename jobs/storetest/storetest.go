// Package storetest is the conformance suite of jobs.Store: every backend (package store's bbolt
// file, package store/postgres) runs Run, so that what jobs/store.go promises holds for each of
// them, and a promise a backend breaks fails a test with the backend's name in it. It is modeled
// on River's riverdrivertest.
//
// A backend's own tests call it with a Backend that opens its stores:
//
//	func TestConformance(t *testing.T) { storetest.Run(t, backends.BBolt()) }
//
// The suite tests the contract only. What is about one backend's data (bbolt's file: damage, the
// codec, the freelist, a full disk; Postgres's schema and migrations) stays in that backend's tests.
//
// # What differs by design
//
// A store that implements jobs.Shared is used by several processes at once, and the suite
// branches on that (the tests say where):
//   - Recover hands it no job (a predecessor's leases run out and the leader rescues them through
//     Expired), so Recover/HandsLeasedJobs checks that nothing is handed and the jobs stay leased
//     and expire, and Recover/AllOrNothing skips (nothing is handed, so nothing can fail);
//   - LeaseQueued honours Lease.Cap, which a store for one process may ignore (its runtime counts
//     its own leases), so LeaseQueued/Cap runs for Shared stores only.
//
// Backend.Commits is optional: without it, Recover/NothingLeasedWritesNothing checks what Recover
// returns but not that it made no commit.
package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
	"github.com/tandem-run/tandem/jobs"
)

// Store is a jobs.Store the suite can close, as a process does at exit.
type Store interface {
	jobs.Store
	// Close releases the store; every method then fails with jobs.ErrStoreClosed.
	Close() error
}

// Backend is one implementation of jobs.Store under test.
type Backend struct {
	// Name names the backend in subtests: "bbolt", "postgres".
	Name string
	// New makes a new, empty place for jobs (a file in t.TempDir(), a fresh database) and returns
	// the Opener of stores on it. New registers the cleanup that closes the stores left open, and
	// checks the data where the backend can (bbolt's consistency check).
	New func(t *testing.T) Opener
	// Commits, when set, returns how many commits s has made, for the promises that a call writes
	// nothing (a Recover with no job left leased). Nil skips those checks.
	Commits func(s Store) uint64
}

// Opener opens a store on the data of one Backend.New, with now as the store's clock (nil:
// time.Now). Each call opens the same data again: the caller closes one store before it opens the
// next, as a process that restarts does.
type Opener func(t *testing.T, now func() time.Time) Store

// Run runs every test of the suite against b, each as a subtest.
func Run(t *testing.T, b Backend) {
	t.Helper()
	for _, tc := range suite {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, b) })
	}
}

// suite lists the tests, by the method (or promise) they are about.
var suite = []struct {
	name string
	run  func(t *testing.T, b Backend)
}{
	{"Insert/IDsAndCreatedAt", testInsertIDs},
	{"Insert/RoundTrip", testRoundTrip},
	{"Insert/RefusesOtherStatesWritesNothing", testInsertStates},
	{"Insert/UniqueKeyHeldByLiveJobs", testUniqueLive},
	{"Insert/UniqueKeyInOneBatch", testUniqueBatch},
	{"Insert/MaxPending", testMaxPending},
	{"Insert/MaxPendingCountsWaitingOnly", testMaxPendingWaiting},
	{"Get/NotFound", testGetNotFound},
	{"Get/CallersCopy", testCallersCopy},
	{"GetMany/FoundInOrder", testGetMany},
	{"Update/ChangesIndexesAndCounts", testUpdateMoves},
	{"Update/ErrorAbortsOnlyItself", testUpdateError},
	{"Update/NotFound", testUpdateNotFound},
	{"UpdateQueued/InOrder", testUpdateQueuedOrder},
	{"ApplyQueued/ManyJobsOneRequest", testApplyQueued},
	{"LeaseQueued/Order", testLeaseOrder},
	{"LeaseQueued/MarksPrefetched", testLeaseMarks},
	{"LeaseQueued/ReadyOnly", testLeaseReadyOnly},
	{"LeaseQueued/Paused", testLeasePaused},
	{"LeaseQueued/Cap", testLeaseCap},
	{"LeaseQueued/ConcurrentNeverTwice", testLeaseConcurrent},
	{"Promote/DueOnly", testPromote},
	{"Promote/ManyCommits", testPromoteMany},
	{"Recover/HandsLeasedJobs", testRecover},
	{"Recover/AllOrNothing", testRecoverAllOrNothing},
	{"Recover/NothingLeasedWritesNothing", testRecoverNothing},
	{"Reopen/KeepsJobsPausesCounts", testReopen},
	{"Expired/SoonestFirst", testExpired},
	{"Delete", testDelete},
	{"Sweep", testSweep},
	{"DeleteMany", testDeleteMany},
	{"List/NewestFirstAndFilters", testListFilters},
	{"List/Cursors", testListCursors},
	{"List/CursorStableUnderInserts", testListCursorInserts},
	{"List/Limits", testListLimits},
	{"List/BadCursor", testListBadCursor},
	{"List/Created", testListCreated},
	{"Queues/Counts", testQueuesCounts},
	{"Queues/OldestReady", testQueuesOldestReady},
	{"SetPaused/ReadyPaused", testSetPaused},
	{"Ping", testPing},
	{"FirePeriodic/OncePerSlot", testPeriodicOncePerSlot},
	{"FirePeriodic/ConcurrentOneJobPerSlot", testPeriodicConcurrent},
	{"Close/ErrStoreClosed", testClosed},
	{"Concurrent/Use", testConcurrent},
}

// epoch is where every test's clock starts: whole seconds, so that every backend keeps times exactly.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// bundle is what a test works with: the store under test, its clock, and the way to reopen it.
type bundle struct {
	backend Backend
	open    Opener
	clock   *tandemtest.Clock
	store   Store
	shared  bool // the store is a jobs.Shared: see the package doc
}

// setup opens a store on new data, with a fake clock at epoch.
func setup(t *testing.T, b Backend) (Store, *bundle) {
	t.Helper()
	bb := &bundle{backend: b, open: b.New(t), clock: tandemtest.NewClock(epoch)}
	bb.store = bb.open(t, bb.clock.Now)
	_, bb.shared = bb.store.(jobs.Shared)
	return bb.store, bb
}

// reopen closes the store and opens its data again, as a restarted process does.
func (bb *bundle) reopen(t *testing.T) Store {
	t.Helper()
	if err := bb.store.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	bb.store = bb.open(t, bb.clock.Now)
	return bb.store
}

// commits returns the store's commits so far, and whether the backend can tell.
func (bb *bundle) commits() (uint64, bool) {
	if bb.backend.Commits == nil {
		return 0, false
	}
	return bb.backend.Commits(bb.store), true
}

func newJob(queue string, prio int, runAt time.Time) *jobs.Job {
	return &jobs.Job{Kind: "noop", Queue: queue, Priority: prio, RunAt: runAt, State: jobs.StateReady, MaxAttempts: 3}
}

func insert(t *testing.T, s Store, js ...*jobs.Job) []*jobs.Job {
	t.Helper()
	out, _, err := s.Insert(context.Background(), js, nil)
	if err != nil {
		t.Fatalf("insert: %v", err)
	}
	return out
}

func get(t *testing.T, s Store, id string) *jobs.Job {
	t.Helper()
	j, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return j
}

func update(t *testing.T, s Store, id string, fn func(j *jobs.Job)) *jobs.Job {
	t.Helper()
	j, err := s.Update(context.Background(), id, func(j *jobs.Job) error { fn(j); return nil })
	if err != nil {
		t.Fatalf("update %s: %v", id, err)
	}
	return j
}

// lease leases up to n jobs of queue for d and waits for the lease's commit; the jobs are copies.
func lease(t *testing.T, s Store, queue string, n int, d time.Duration) []*jobs.Job {
	t.Helper()
	js, wait, err := s.LeaseQueued(context.Background(), jobs.Lease{Queue: queue, N: n, For: d})
	if err != nil {
		t.Fatalf("lease %s: %v", queue, err)
	}
	out := make([]*jobs.Job, len(js))
	for i, j := range js {
		out[i] = j.Clone()
	}
	if err := wait(); err != nil {
		t.Fatalf("lease %s: commit: %v", queue, err)
	}
	return out
}

// start moves a prefetched job to running, as a worker does.
func start(t *testing.T, s Store, id string, now time.Time) *jobs.Job {
	t.Helper()
	return update(t, s, id, func(j *jobs.Job) {
		at := now
		j.State, j.StartedAt = jobs.StateRunning, &at
		j.Attempt++
	})
}

// finish moves a job to a finished state at now.
func finish(t *testing.T, s Store, id string, st jobs.State, now time.Time) *jobs.Job {
	t.Helper()
	return update(t, s, id, func(j *jobs.Job) {
		at := now
		j.State, j.LeaseUntil, j.FinishedAt = st, nil, &at
	})
}

// queue returns one queue's stats, failing when Queues does not list it.
func queue(t *testing.T, s Store, name string) jobs.QueueStats {
	t.Helper()
	qs, err := s.Queues(context.Background())
	if err != nil {
		t.Fatalf("queues: %v", err)
	}
	for _, q := range qs {
		if q.Name == name {
			return q
		}
	}
	t.Fatalf("queue %q not in Queues: %+v", name, qs)
	return jobs.QueueStats{}
}

func ids(js []*jobs.Job) []string {
	out := make([]string, len(js))
	for i, j := range js {
		out[i] = j.ID
	}
	return out
}
