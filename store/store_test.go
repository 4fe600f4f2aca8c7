package store

import (
	"bytes"
	"context"
	"errors"
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

// TestGroupCommit: concurrent inserts share commits (bbolt's committer: one transaction and one
// fsync for many requests), and none is lost.
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
