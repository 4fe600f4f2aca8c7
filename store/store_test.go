package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
	"github.com/tandem-run/tandem/jobs"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"
)

// ants (linked in through package jobs) starts the goroutines of its default pool at init; they
// are not ours.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, goleak.IgnoreCurrent()) }

type bundle struct {
	path  string
	clock *tandemtest.Clock
}

// setup opens a store on a new file with a fake clock; cleanup checks the file's consistency.
func setup(t testing.TB) (*Store, *bundle) {
	t.Helper()
	b := &bundle{path: filepath.Join(t.TempDir(), "tandem.db"), clock: tandemtest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))}
	return openAt(t, b), b
}

func openAt(t testing.TB, b *bundle) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{Path: b.path, Now: b.clock.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Check(); err != nil && !errors.Is(err, jobs.ErrStoreClosed) {
			t.Errorf("consistency check: %v", err)
		}
		s.Close()
	})
	return s
}

func newJob(queue string, prio int, runAt time.Time) *jobs.Job {
	return &jobs.Job{Kind: "noop", Queue: queue, Priority: prio, RunAt: runAt, State: jobs.StateReady, MaxAttempts: 3}
}

func insert(t testing.TB, s *Store, js ...*jobs.Job) []*jobs.Job {
	t.Helper()
	out, _, err := s.Insert(context.Background(), js, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestInsertGetAndCounts(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	j := insert(t, s, newJob("default", 0, b.clock.Now()))[0]
	if j.ID == "" || !j.CreatedAt.Equal(b.clock.Now()) {
		t.Fatalf("inserted %+v", j)
	}
	got, err := s.Get(ctx, j.ID)
	if err != nil || got.ID != j.ID || got.State != jobs.StateReady {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if _, err := s.Get(ctx, "00000000-0000-7000-8000-000000000000"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if _, err := s.Get(ctx, "not-an-id"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("bad id: %v", err)
	}
	if s.Ready("default") != 1 || s.Waiting("default") != 1 {
		t.Fatalf("counters: ready %d waiting %d", s.Ready("default"), s.Waiting("default"))
	}
}

func TestLeaseOrder(t *testing.T) {
	s, b := setup(t)
	now := b.clock.Now()
	a := insert(t, s, newJob("q", 1, now.Add(-time.Minute)))[0] // older, low priority
	hi := insert(t, s, newJob("q", 9, now))[0]
	c := insert(t, s, newJob("q", 1, now.Add(-2*time.Minute)))[0] // oldest, low priority
	insert(t, s, newJob("other", 9, now))
	got, err := s.Lease(context.Background(), "q", 10, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{hi.ID, c.ID, a.ID}
	if len(got) != 3 {
		t.Fatalf("leased %d", len(got))
	}
	for i, j := range got {
		// Prefetched, not started: no attempt is counted and no start time set until a worker runs it.
		if j.ID != want[i] || j.State != jobs.StatePrefetched || j.Attempt != 0 || j.StartedAt != nil || j.LeaseUntil == nil || !j.LeaseUntil.Equal(now.Add(time.Minute)) {
			t.Fatalf("lease %d = %+v, want id %s", i, j, want[i])
		}
	}
	if again, _ := s.Lease(context.Background(), "q", 10, time.Minute); len(again) != 0 {
		t.Fatalf("leased %d jobs twice", len(again))
	}
	qs, _ := s.Queues(context.Background())
	if len(qs) != 2 || qs[1].Name != "q" || qs[1].Counts[jobs.StatePrefetched] != 3 || qs[1].Counts[jobs.StateRunning] != 0 || qs[1].Counts[jobs.StateReady] != 0 {
		t.Fatalf("queues = %+v", qs)
	}
}

func TestPromoteAndOldestReady(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	now := b.clock.Now()
	for i := range 3 {
		j := newJob("q", 0, now.Add(time.Duration(i+1)*time.Minute))
		j.State = jobs.StateScheduled
		insert(t, s, j)
	}
	moved, next, err := s.Promote(ctx, now.Add(90*time.Second))
	if err != nil || moved != 1 || !next.Equal(now.Add(2*time.Minute)) {
		t.Fatalf("Promote = %d, %v, %v", moved, next, err)
	}
	qs, _ := s.Queues(ctx)
	if qs[0].Counts[jobs.StateReady] != 1 || qs[0].Counts[jobs.StateScheduled] != 2 || !qs[0].OldestReady.Equal(now.Add(time.Minute)) {
		t.Fatalf("queues = %+v", qs[0])
	}
	moved, next, _ = s.Promote(ctx, now.Add(time.Hour))
	if moved != 2 || !next.IsZero() {
		t.Fatalf("second Promote = %d, %v", moved, next)
	}
}

func TestUniqueKeys(t *testing.T) {
	s, _ := setup(t)
	ctx := context.Background()
	j1 := newJob("q", 0, time.Time{})
	j1.UniqueKey = "report-42"
	first := insert(t, s, j1)[0]
	j2 := newJob("q", 0, time.Time{})
	j2.UniqueKey = "report-42"
	out, created, err := s.Insert(ctx, []*jobs.Job{j2}, nil)
	if err != nil || created[0] || out[0].ID != first.ID {
		t.Fatalf("duplicate: %v %v %v", out[0].ID, created, err)
	}
	// Once the holder finishes, the key is free again.
	if _, err := s.Update(ctx, first.ID, func(j *jobs.Job) error { j.State = jobs.StateSucceeded; return nil }); err != nil {
		t.Fatal(err)
	}
	j3 := newJob("q", 0, time.Time{})
	j3.UniqueKey = "report-42"
	out, created, _ = s.Insert(ctx, []*jobs.Job{j3}, nil)
	if !created[0] || out[0].ID == first.ID {
		t.Fatal("key not released by a finished job")
	}
}

func TestMaxPendingWritesNothing(t *testing.T) {
	s, _ := setup(t)
	limit := func(string) int { return 3 }
	if _, _, err := s.Insert(context.Background(), []*jobs.Job{newJob("q", 0, time.Time{}), newJob("q", 0, time.Time{})}, limit); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.Insert(context.Background(), []*jobs.Job{newJob("q", 0, time.Time{}), newJob("q", 0, time.Time{})}, limit)
	if !errors.Is(err, jobs.ErrQueueFull) {
		t.Fatalf("got %v, want ErrQueueFull", err)
	}
	if s.Waiting("q") != 2 {
		t.Fatalf("a refused batch wrote: waiting %d", s.Waiting("q"))
	}
	js, _, _ := s.List(context.Background(), jobs.Filter{})
	if len(js) != 2 {
		t.Fatalf("%d jobs stored", len(js))
	}
}

func TestUpdateErrorAbortsOnlyItself(t *testing.T) {
	s, _ := setup(t)
	ctx := context.Background()
	a := insert(t, s, newJob("q", 0, time.Time{}))[0]
	bad := errors.New("refused")
	var wg sync.WaitGroup
	var errA, errB error
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, errA = s.Update(ctx, a.ID, func(j *jobs.Job) error { return bad })
	}()
	go func() {
		defer wg.Done()
		_, errB = s.Update(ctx, a.ID, func(j *jobs.Job) error { j.Priority = 5; return nil })
	}()
	wg.Wait()
	if !errors.Is(errA, bad) || errB != nil {
		t.Fatalf("errA %v errB %v", errA, errB)
	}
	got, _ := s.Get(ctx, a.ID)
	if got.Priority != 5 {
		t.Fatalf("priority %d", got.Priority)
	}
}

func TestRecoverAndReopen(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	insert(t, s, newJob("q", 0, time.Time{}), newJob("q", 0, time.Time{}), newJob("q", 0, time.Time{}))
	if err := s.SetPaused(ctx, "mail", true); err != nil {
		t.Fatal(err)
	}
	leased, _ := s.Lease(ctx, "q", 2, time.Minute)
	started, err := s.Update(ctx, leased[1].ID, lease(b.clock.Now())) // a worker ran this one
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openAt(t, b)
	if !s.Paused("mail") {
		t.Fatal("pause not persisted")
	}
	if s.Ready("q") != 1 {
		t.Fatalf("counters not persisted: ready %d", s.Ready("q"))
	}
	seen := map[string]jobs.State{}
	n, err := s.Recover(ctx, func(j *jobs.Job) { seen[j.ID] = j.State; j.State = jobs.StateReady })
	if err != nil || n != 2 {
		t.Fatalf("Recover = %d, %v", n, err)
	}
	if seen[leased[0].ID] != jobs.StatePrefetched || seen[started.ID] != jobs.StateRunning {
		t.Fatalf("Recover handed %v", seen)
	}
	j, _ := s.Get(ctx, started.ID)
	if j.State != jobs.StateReady || j.Attempt != 1 || j.LeaseUntil != nil {
		t.Fatalf("recovered job = %+v", j)
	}
	if s.Ready("q") != 3 {
		t.Fatalf("ready %d", s.Ready("q"))
	}
	if got, _ := s.Lease(ctx, "mail", 1, time.Minute); len(got) != 0 {
		t.Fatal("leased from a paused queue")
	}
	// With nothing left leased, Recover writes nothing.
	before := s.CommitStats().Commits
	if n, err := s.Recover(ctx, func(*jobs.Job) { t.Error("nothing to recover") }); n != 0 || err != nil || s.CommitStats().Commits != before {
		t.Fatalf("Recover of nothing = %d, %v, %d commits", n, err, s.CommitStats().Commits-before)
	}
	// A policy that leaves a job leased fails the whole recovery, which writes nothing.
	again, _ := s.Lease(ctx, "q", 2, time.Minute)
	calls := 0
	if _, err := s.Recover(ctx, func(j *jobs.Job) {
		if calls++; calls == 1 {
			j.State = jobs.StateReady
		}
	}); err == nil {
		t.Fatal("Recover accepted a job left prefetched")
	}
	for _, j := range again {
		if cur, _ := s.Get(ctx, j.ID); cur.State != jobs.StatePrefetched {
			t.Fatalf("a failed Recover wrote job %s: %s", j.ID, cur.State)
		}
	}
}

func TestExpiredLeases(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	insert(t, s, newJob("q", 0, time.Time{}))
	leased, _ := s.Lease(ctx, "q", 1, time.Minute)
	if ids, _ := s.Expired(ctx, b.clock.Now().Add(30*time.Second), 10); len(ids) != 0 {
		t.Fatalf("expired early: %v", ids)
	}
	ids, _ := s.Expired(ctx, b.clock.Now().Add(2*time.Minute), 10)
	if len(ids) != 1 || ids[0] != leased[0].ID {
		t.Fatalf("expired = %v", ids)
	}
}

func TestDeleteAndSweep(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	var ids []string
	for range 7 {
		ids = append(ids, insert(t, s, newJob("q", 0, time.Time{}))[0].ID)
	}
	if err := s.Delete(ctx, ids[0]); !errors.Is(err, jobs.ErrNotFinished) {
		t.Fatalf("delete waiting job: %v", err)
	}
	for i, id := range ids {
		if _, err := s.Update(ctx, id, func(j *jobs.Job) error {
			fin := b.clock.Now().Add(time.Duration(i) * time.Hour)
			j.State, j.FinishedAt = jobs.StateSucceeded, &fin
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, ids[6]); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, ids[6]); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	n, err := s.Sweep(ctx, b.clock.Now().Add(150*time.Minute), 2) // finished at 0h, 1h, 2h
	if err != nil || n != 3 {
		t.Fatalf("Sweep = %d, %v", n, err)
	}
	qs, _ := s.Queues(ctx)
	if qs[0].Counts[jobs.StateSucceeded] != 3 {
		t.Fatalf("succeeded %d, want 3", qs[0].Counts[jobs.StateSucceeded])
	}
}

func TestListPagination(t *testing.T) {
	s, _ := setup(t)
	ctx := context.Background()
	var ids []string
	for i := range 25 {
		j := newJob([]string{"a", "b"}[i%2], 0, time.Time{})
		ids = append(ids, insert(t, s, j)[0].ID)
	}
	var seen []string
	cursor := ""
	for page := 0; ; page++ {
		js, next, err := s.List(ctx, jobs.Filter{Queue: "a", Limit: 5, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range js {
			seen = append(seen, j.ID)
		}
		if next == "" {
			break
		}
		cursor = next
		if page > 10 {
			t.Fatal("pagination does not end")
		}
	}
	var want []string
	for i := 24; i >= 0; i-- {
		if i%2 == 0 {
			want = append(want, ids[i])
		}
	}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("pages = %v\nwant    %v", seen, want)
	}
	if _, _, err := s.List(ctx, jobs.Filter{Cursor: "zz"}); !errors.Is(err, jobs.ErrBadCursor) {
		t.Fatalf("bad cursor: %v", err)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	_, b := setup(t)
	start := time.Now()
	_, err := Open(context.Background(), Options{Path: b.path, OpenTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("got %v, want ErrLocked", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("waited far past the open timeout")
	}
}

func TestForeignAndDamagedFilesUntouched(t *testing.T) {
	dir := t.TempDir()
	foreign := filepath.Join(dir, "foreign.db")
	db, err := bolt.Open(foreign, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("theirs")); return err })
	db.Close()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte("garbage!"), 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		path string
		want error
	}{"foreign": {foreign, ErrNotTandem}, "garbage": {garbage, ErrCorrupt}} {
		before, _ := os.ReadFile(tc.path)
		_, err := Open(context.Background(), Options{Path: tc.path, OpenTimeout: time.Second})
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
		after, _ := os.ReadFile(tc.path)
		if !bytes.Equal(before, after) {
			t.Errorf("%s: file changed", name)
		}
	}
}

func TestClosedStore(t *testing.T) {
	s, _ := setup(t)
	s.Close()
	if _, _, err := s.Insert(context.Background(), []*jobs.Job{newJob("q", 0, time.Time{})}, nil); !errors.Is(err, jobs.ErrStoreClosed) {
		t.Fatalf("insert after close: %v", err)
	}
}

// TestGroupCommit: concurrent inserts share commits, and none is lost.
func TestGroupCommit(t *testing.T) {
	s, _ := setup(t)
	const workers, each = 32, 50
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, _, err := s.Insert(context.Background(), []*jobs.Job{newJob("q", 0, time.Time{})}, nil); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := s.CommitStats()
	if s.Ready("q") != workers*each || st.Requests < workers*each {
		t.Fatalf("ready %d, stats %+v", s.Ready("q"), st)
	}
	if st.Commits >= st.Requests {
		t.Fatalf("no request shared a commit: %+v", st)
	}
	t.Logf("%d requests in %d commits", st.Requests, st.Commits)
}
