package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tandem-run/tandem/jobs"
)

// hold occupies the committer with a request that waits for release, so that requests sent
// meanwhile join its transaction (the committer drains the channel before it commits). It returns
// once the committer is inside that request.
func hold(t *testing.T, s *Store, result error) (release func()) {
	t.Helper()
	entered, release := block(t, s, result)
	within(t, entered)
	return release
}

// block sends a request that closes entered when the committer runs it and then waits for
// release; a failed test releases it too, so the store can close.
func block(t *testing.T, s *Store, result error) (entered <-chan struct{}, release func()) {
	t.Helper()
	in, released := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(released) }) }
	t.Cleanup(release)
	if _, err := s.send(context.Background(), func(*txn) error {
		close(in)
		<-released
		return result
	}); err != nil {
		t.Fatal(err)
	}
	return in, release
}

// within receives from ch, failing the test after 5 s (a missing drain would otherwise hang it).
func within[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("timed out waiting for the committer")
		panic("unreachable")
	}
}

// queued waits until n requests wait in the committer's channel.
func queued(t *testing.T, s *Store, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); len(s.reqs) < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests queued, want %d", len(s.reqs), n)
		}
	}
}

// TestOneTransactionManyChanges runs every kind of change to the same records inside one
// transaction, where they are netted before being written; the cleanup's Check then compares
// every index and counter with the records.
func TestOneTransactionManyChanges(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	now := b.clock.Now()
	kept := insert(t, s, newJob("q", 0, now), newJob("q", 0, now))
	uniq := newJob("q", 0, now)
	uniq.UniqueKey = "u1"
	insert(t, s, uniq)

	id := func(j *jobs.Job) []byte { k, _ := idKey(j.ID); return k }
	err := s.exec(ctx, func(t *txn) error {
		fresh := newJob("q", 0, now)
		fresh.ID = "0190a8c8-0000-7000-8000-000000000001"
		fresh.UniqueKey = "u2"
		steps := []func() error{
			// A new record, leased and finished in the same transaction.
			func() error { return t.put(nil, fresh) },
			func() error { _, err := t.modify(id(fresh), lease(t.now)); return err },
			func() error { _, err := t.modify(id(fresh), finish(jobs.StateSucceeded, t.now)); return err },
			// A stored record leased, then put back to ready: its net change is none.
			func() error { _, err := t.modify(id(kept[0]), lease(t.now)); return err },
			func() error { _, err := t.modify(id(kept[0]), back); return err },
			// A stored record leased, a scan in between (written back), then dead.
			func() error { _, err := t.modify(id(kept[1]), lease(t.now)); return err },
			func() error { _, err := t.scan(bucketLease); return err },
			func() error { _, err := t.modify(id(kept[1]), finish(jobs.StateDead, t.now)); return err },
			// A unique job finished (its key freed) and then removed.
			func() error { _, err := t.modify(id(uniq), finish(jobs.StateCanceled, t.now)); return err },
			func() error {
				j, err := t.get(id(uniq))
				if err != nil {
					return err
				}
				return t.remove(j)
			},
		}
		for i, step := range steps {
			if err := step(); err != nil {
				return fmt.Errorf("step %d: %w", i, err)
			}
		}
		if _, err := t.get(id(uniq)); !errors.Is(err, jobs.ErrNotFound) {
			return fmt.Errorf("removed record still read: %v", err)
		}
		if !t.changedInBatch(id(kept[0])) || t.changedInBatch([]byte("0123456789abcdef")) {
			return errors.New("changedInBatch is wrong")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id    string
		state jobs.State
	}{{"0190a8c8-0000-7000-8000-000000000001", jobs.StateSucceeded}, {kept[0].ID, jobs.StateReady}, {kept[1].ID, jobs.StateDead}} {
		if j, err := s.Get(ctx, c.id); err != nil || j.State != c.state {
			t.Fatalf("%s: %+v, %v; want %s", c.id, j, err, c.state)
		}
	}
	if _, err := s.Get(ctx, uniq.ID); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("removed job: %v", err)
	}
	// Both unique keys are free again.
	again := newJob("q", 0, now)
	again.UniqueKey = "u1"
	if _, created, err := s.Insert(ctx, []*jobs.Job{again}, nil); err != nil || !created[0] {
		t.Fatalf("u1 not freed: %v", err)
	}
}

// leased is what LeaseQueued returned.
type leased struct {
	jobs []*jobs.Job
	wait func() error
	err  error
}

// leaseWhileHeld opens a store with one ready job, holds the committer, and queues a LeaseQueued
// for it behind the hold; release lets the batch run.
func leaseWhileHeld(t *testing.T) (s *Store, b *bundle, j *jobs.Job, release func(), got <-chan leased) {
	t.Helper()
	s, b = setup(t)
	j = insert(t, s, newJob("q", 0, b.clock.Now()))[0]
	release = hold(t, s, nil)
	got = leaseQueued(s, "q")
	queued(t, s, 1)
	return s, b, j, release, got
}

// leaseQueued calls LeaseQueued for up to 5 jobs of queue from a goroutine, since it returns only
// once the committer has run the lease.
func leaseQueued(s *Store, queue string) <-chan leased {
	got := make(chan leased, 1)
	go func() {
		js, wait, err := s.LeaseQueued(context.Background(), jobs.Lease{Queue: queue, N: 5, For: time.Minute})
		got <- leased{js, wait, err}
	}()
	return got
}

func lease(now time.Time) func(j *jobs.Job) error {
	return func(j *jobs.Job) error {
		until := now.Add(time.Minute)
		j.State, j.StartedAt, j.LeaseUntil = jobs.StateRunning, &now, &until
		j.Attempt++
		return nil
	}
}

func finish(st jobs.State, now time.Time) func(j *jobs.Job) error {
	return func(j *jobs.Job) error { j.State, j.LeaseUntil, j.FinishedAt = st, nil, &now; return nil }
}

func back(j *jobs.Job) error {
	j.State, j.LeaseUntil, j.StartedAt = jobs.StateReady, nil, nil
	j.Attempt--
	return nil
}

// TestLeaseQueuedReturnsBeforeTheCommit: the jobs come back while the transaction is still open,
// and an acknowledgement sent then lands in the same commit.
func TestLeaseQueuedReturnsBeforeTheCommit(t *testing.T) {
	s, b, j, release, got := leaseWhileHeld(t)
	ctx := context.Background()
	// A second request holds the transaction open after the lease has run in it.
	entered, releaseSecond := block(t, s, nil)
	before := s.CommitStats().Commits
	release()
	within(t, entered)
	r := within(t, got)
	if r.err != nil || len(r.jobs) != 1 || r.jobs[0].ID != j.ID || r.jobs[0].State != jobs.StatePrefetched {
		t.Fatalf("LeaseQueued = %+v", r)
	}
	if s.CommitStats().Commits != before {
		t.Fatal("the lease returned after its commit, not before")
	}
	wait, err := s.UpdateQueued(ctx, j.ID, finish(jobs.StateSucceeded, b.clock.Now()))
	if err != nil {
		t.Fatal(err)
	}
	releaseSecond()
	if err := r.wait(); err != nil {
		t.Fatal(err)
	}
	if done, err := wait(); err != nil || done.State != jobs.StateSucceeded {
		t.Fatalf("ack: %+v, %v", done, err)
	}
	if s.CommitStats().Commits != before+1 {
		t.Fatalf("lease and acknowledgement took %d commits", s.CommitStats().Commits-before)
	}
}

// TestLeaseQueuedSkipsJobsOfItsOwnBatch: a job inserted in the same transaction is not leased
// before its insert is on disk.
func TestLeaseQueuedSkipsJobsOfItsOwnBatch(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	old := insert(t, s, newJob("q", 0, b.clock.Now()))[0]
	release := hold(t, s, nil)
	inserted := make(chan error, 1)
	go func() { _, _, err := s.Insert(ctx, []*jobs.Job{newJob("q", 9, b.clock.Now())}, nil); inserted <- err }()
	queued(t, s, 1)
	leased := make(chan []*jobs.Job, 1)
	go func() {
		js, wait, err := s.LeaseQueued(ctx, jobs.Lease{Queue: "q", N: 5, For: time.Minute})
		if err == nil {
			err = wait()
		}
		if err != nil {
			t.Error(err)
		}
		leased <- js
	}()
	queued(t, s, 2)
	release()
	if err := within(t, inserted); err != nil {
		t.Fatal(err)
	}
	if js := within(t, leased); len(js) != 1 || js[0].ID != old.ID {
		t.Fatalf("leased %d jobs, want only the one on disk before", len(js))
	}
	if js, err := s.Lease(ctx, "q", 5, time.Minute); err != nil || len(js) != 1 {
		t.Fatalf("the new job was not leased later: %d, %v", len(js), err)
	}
}

// TestLeaseQueuedFailedCommit: when the lease's transaction fails, the caller still gets the jobs
// it may have started, wait reports the failure, and the file still has them ready.
func TestLeaseQueuedFailedCommit(t *testing.T) {
	s, _, j, release, got := leaseWhileHeld(t)
	ctx := context.Background()
	broken := fmt.Errorf("%w: disk gone", errWrite)
	if _, err := s.send(ctx, func(*txn) error { return broken }); err != nil {
		t.Fatal(err)
	}
	queued(t, s, 2)
	release()
	r := within(t, got)
	if r.err != nil || len(r.jobs) != 1 {
		t.Fatalf("LeaseQueued = %+v", r)
	}
	if err := r.wait(); !errors.Is(err, errWrite) {
		t.Fatalf("wait = %v, want the batch's failure", err)
	}
	if cur, err := s.Get(ctx, j.ID); err != nil || cur.State != jobs.StateReady || cur.Attempt != 0 {
		t.Fatalf("after the failed lease: %+v, %v", cur, err)
	}
	if s.Ready("q") != 1 {
		t.Fatalf("ready counter %d", s.Ready("q"))
	}
}

// TestApplyQueuedIsOneRequest: one ApplyQueued request carries every change it makes, however
// many jobs (what it changes is the conformance suite's, storetest; this is about the committer).
func TestApplyQueuedIsOneRequest(t *testing.T) {
	s, _ := setup(t)
	ctx := context.Background()
	js := insert(t, s, newJob("q", 0, time.Time{}), newJob("q", 0, time.Time{}), newJob("q", 0, time.Time{}))
	before := s.CommitStats().Requests
	if err := s.ApplyQueued(ctx, func(u jobs.Updater) {
		for _, j := range js {
			u.Update(j.ID, func(j *jobs.Job) error { j.Priority = 7; return nil })
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil { // after the request's commit
		t.Fatal(err)
	}
	if n := s.CommitStats().Requests - before; n != 2 {
		t.Errorf("%d requests, want 2 (the ApplyQueued and the Ping)", n)
	}
	for i, j := range js {
		if got, _ := s.Get(ctx, j.ID); got.Priority != 7 {
			t.Errorf("job %d: priority %d, want 7", i, got.Priority)
		}
	}
}
