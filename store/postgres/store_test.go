package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tandem-run/tandem/internal/tandemtest"
	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/store/postgres"
)

func TestMain(m *testing.M) {
	ignore := goleak.IgnoreCurrent()
	code := tandemtest.RunWithPostgres(m)
	if code == 0 {
		if err := goleak.Find(ignore); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

// open opens a Store on url, closed at the test's cleanup.
func open(t testing.TB, url string, mod ...func(*postgres.Options)) *postgres.Store {
	t.Helper()
	o := postgres.Options{URL: url, PollInterval: 100 * time.Millisecond}
	for _, f := range mod {
		f(&o)
	}
	s, err := postgres.Open(context.Background(), o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// setup returns a Store on a fresh database, and the database's URL for a second one.
func setup(t testing.TB) (*postgres.Store, string) {
	t.Helper()
	url := tandemtest.Postgres(t)
	return open(t, url), url
}

func newJob(queue string) *jobs.Job {
	return &jobs.Job{Kind: "noop", Queue: queue, State: jobs.StateReady, MaxAttempts: 3, RunAt: time.Now(), Payload: json.RawMessage(`{"b": 1,  "a":2}`)}
}

func insert(t testing.TB, s *postgres.Store, js ...*jobs.Job) []*jobs.Job {
	t.Helper()
	out, _, err := s.Insert(context.Background(), js, nil)
	if err != nil {
		t.Fatalf("insert: %v", err)
	}
	return out
}

// TestRecordRoundTrips: every field of a job comes back from Get as it was written (times to the
// microsecond, in UTC), and the job an Update returns is the one Get reads.
func TestRecordRoundTrips(t *testing.T) {
	s, _ := setup(t)
	ctx := context.Background()
	now := time.Now()
	started, fin, lease := now.Add(time.Second), now.Add(2*time.Second), now.Add(3*time.Second)
	j := &jobs.Job{Kind: "k", Queue: "q", Payload: json.RawMessage(`{"z":1, "a": [1,2]}`), Priority: 7, RunAt: now.Add(time.Hour),
		MaxAttempts: 5, Timeout: 1500 * time.Millisecond, State: jobs.StateScheduled, UniqueKey: "u1"}
	out := insert(t, s, j)[0]
	got, err := s.Get(ctx, out.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, out) {
		t.Fatalf("Get after Insert:\n got %+v\nwant %+v", got, out)
	}
	upd, err := s.Update(ctx, out.ID, func(j *jobs.Job) error {
		j.State, j.Attempt = jobs.StateSucceeded, 2
		j.StartedAt, j.FinishedAt, j.LeaseUntil = &started, &fin, &lease
		j.Errors = []jobs.AttemptError{{Attempt: 1, At: now, Error: "boom"}}
		j.Result = json.RawMessage(`{"ok":  true}`)
		j.AttemptedBy = []string{"a:1", "b:2"}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err = s.Get(ctx, out.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, upd) {
		t.Fatalf("Get after Update:\n got %+v\nwant %+v", got, upd)
	}
	if string(got.Payload) != `{"z":1, "a": [1,2]}` || got.FinishedAt.Nanosecond()%1000 != 0 || got.RunAt.Location() != time.UTC {
		t.Fatalf("payload %s, finished %v: want the bytes as sent and microsecond UTC times", got.Payload, got.FinishedAt)
	}
	if _, err := s.Get(ctx, "not-a-uuid"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("Get(bad id) = %v, want ErrNotFound", err)
	}
}

// TestLeaseAndAck: the best ready job is leased first, prefetched with a lease; acknowledging it
// writes its outcome.
func TestLeaseAndAck(t *testing.T) {
	s, _ := setup(t)
	ctx := context.Background()
	low, high := newJob("q"), newJob("q")
	high.Priority = 9
	insert(t, s, low, high)
	if s.Ready("q") != 2 {
		t.Fatalf("Ready = %d, want 2", s.Ready("q"))
	}
	js, wait, err := s.LeaseQueued(ctx, jobs.Lease{Queue: "q", N: 1, For: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if len(js) != 1 || js[0].ID != high.ID || js[0].State != jobs.StatePrefetched || js[0].LeaseUntil == nil {
		t.Fatalf("leased %+v, want the priority-9 job prefetched with a lease", js)
	}
	done, err := s.Update(ctx, js[0].ID, func(j *jobs.Job) error {
		j.State = jobs.StateSucceeded
		return nil
	})
	if err != nil || done.State != jobs.StateSucceeded {
		t.Fatalf("ack: %v %v", done, err)
	}
	if s.Ready("q") != 1 {
		t.Fatalf("Ready = %d after one lease, want 1", s.Ready("q"))
	}
	qs, err := s.Queues(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) != 1 || qs[0].Counts[jobs.StateReady] != 1 || qs[0].Counts[jobs.StateSucceeded] != 1 || qs[0].OldestReady.IsZero() {
		t.Fatalf("Queues = %+v", qs)
	}
}
