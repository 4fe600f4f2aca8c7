package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-run/tandem/internal/tandemtest"
	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/store/postgres"
)

// TestGroupCommitSharesTransactions: updates sent at once share commits, and one whose fn fails
// fails alone.
func TestGroupCommitSharesTransactions(t *testing.T) {
	url := tandemtest.Postgres(t)
	var commits, requests atomic.Int64
	s := open(t, url, func(o *postgres.Options) {
		o.OnCommit = func(_ time.Duration, n int) { commits.Add(1); requests.Add(int64(n)) }
	})
	ctx := context.Background()
	const n = 200
	js := make([]*jobs.Job, n)
	for i := range js {
		js[i] = newJob("q")
	}
	insert(t, s, js...)
	commits.Store(0)
	requests.Store(0)
	boom := errors.New("boom")
	waits := make([]func() (*jobs.Job, error), n)
	for i, j := range js {
		w, err := s.UpdateQueued(ctx, j.ID, func(j *jobs.Job) error {
			if i == 7 {
				return boom
			}
			j.Attempt = 1
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		waits[i] = w
	}
	for i, w := range waits {
		j, err := w()
		if i == 7 {
			if !errors.Is(err, boom) {
				t.Fatalf("update 7 = %v, want its fn's error", err)
			}
			continue
		}
		if err != nil || j.Attempt != 1 {
			t.Fatalf("update %d = %+v, %v", i, j, err)
		}
	}
	if c := commits.Load(); c >= n/2 || requests.Load() != n {
		t.Fatalf("%d updates took %d commits carrying %d requests: want them to share commits", n, c, requests.Load())
	}
	got, _ := s.Get(ctx, js[7].ID)
	if got.Attempt != 0 {
		t.Fatalf("the failed update wrote: attempt %d", got.Attempt)
	}
	if _, err := s.Update(ctx, "0190a0a0-0000-7000-8000-000000000000", func(*jobs.Job) error { return nil }); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("update of a missing job: %v", err)
	}
}

// TestConcurrentMigrations: processes migrating a fresh database at once apply each version once.
func TestConcurrentMigrations(t *testing.T) {
	url := tandemtest.Postgres(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	applied := make([][]int, 8)
	errs := make([]error, 8)
	for i := range applied {
		wg.Go(func() { applied[i], errs[i] = postgres.Migrate(ctx, url) })
	}
	wg.Wait()
	total := 0
	for i := range applied {
		if errs[i] != nil {
			t.Fatalf("migrate %d: %v", i, errs[i])
		}
		total += len(applied[i])
	}
	st, err := postgres.Status(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if total != st.Latest || st.Current != st.Latest || len(st.Pending) != 0 {
		t.Fatalf("8 migrations applied %d versions in all, status %+v: want each of %d once", total, st, st.Latest)
	}
	fresh := tandemtest.Postgres(t)
	st, err = postgres.Status(ctx, fresh)
	if err != nil || st.Current != 0 || len(st.Pending) != st.Latest || st.Pending[0].Name != "init" {
		t.Fatalf("status of a fresh database: %+v, %v", st, err)
	}
}

// TestSchemaNewer: a database a newer tandem migrated is refused, naming both versions.
func TestSchemaNewer(t *testing.T) {
	url := tandemtest.Postgres(t)
	ctx := context.Background()
	if _, err := postgres.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	exec(t, url, `INSERT INTO tandem_migrations (version, name) VALUES (999, 'future')`)
	_, err := postgres.Open(ctx, postgres.Options{URL: url})
	if !errors.Is(err, postgres.ErrSchemaNewer) {
		t.Fatalf("Open = %v, want ErrSchemaNewer", err)
	}
	t.Log(err)
}

func exec(t testing.TB, url, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// leaseAll leases from s until a round gets none, returning the ids.
func leaseAll(t testing.TB, s *postgres.Store, l jobs.Lease) []string {
	var ids []string
	for range 10_000 {
		js, wait, err := s.LeaseQueued(context.Background(), l)
		if err == nil {
			err = wait()
		}
		if err != nil {
			t.Error(err)
			return ids
		}
		if len(js) == 0 {
			return ids
		}
		for _, j := range js {
			ids = append(ids, j.ID)
		}
	}
	return ids
}

// TestTwoReplicasNeverLeaseOneJobTwice: two Stores on one database leasing at once share the
// jobs out, each leased once.
func TestTwoReplicasNeverLeaseOneJobTwice(t *testing.T) {
	a, url := setup(t)
	b := open(t, url)
	const n = 1000
	js := make([]*jobs.Job, n)
	for i := range js {
		js[i] = newJob("q")
	}
	insert(t, a, js...)
	tandemtest.WaitFor(t, "b to see the jobs", func() bool { return b.Ready("q") > 0 })
	var wg sync.WaitGroup
	got := make([][]string, 4)
	for i := range got {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() { got[i] = leaseAll(t, s, jobs.Lease{Queue: "q", N: 7, For: time.Minute}) })
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, ids := range got {
		for _, id := range ids {
			if seen[id] {
				t.Fatalf("job %s leased twice", id)
			}
			seen[id] = true
		}
	}
	if len(seen) != n || len(got[0])+len(got[2]) == 0 || len(got[1])+len(got[3]) == 0 {
		t.Fatalf("leased %d of %d (a %d, b %d): want all, from both", len(seen), n, len(got[0])+len(got[2]), len(got[1])+len(got[3]))
	}
}

// TestCapHoldsAcrossReplicas: with a cap of 3, two Stores leasing at once never hold more than 3
// of the queue's jobs between them.
func TestCapHoldsAcrossReplicas(t *testing.T) {
	a, url := setup(t)
	b := open(t, url)
	js := make([]*jobs.Job, 50)
	for i := range js {
		js[i] = newJob("q")
	}
	insert(t, a, js...)
	tandemtest.WaitFor(t, "b to see the jobs", func() bool { return b.Ready("q") > 0 })
	var wg sync.WaitGroup
	var total atomic.Int64
	for i := range 6 {
		s := []*postgres.Store{a, b}[i%2]
		wg.Go(func() { total.Add(int64(len(leaseAll(t, s, jobs.Lease{Queue: "q", N: 10, For: time.Minute, Cap: 3})))) })
	}
	wg.Wait()
	if total.Load() != 3 {
		t.Fatalf("leased %d with a cap of 3", total.Load())
	}
}

// TestUniqueKeyAcrossReplicas: two Stores inserting one unique key at once create one job, and
// both return it.
func TestUniqueKeyAcrossReplicas(t *testing.T) {
	a, url := setup(t)
	b := open(t, url)
	ctx := context.Background()
	for round := range 20 {
		key := fmt.Sprintf("k%d", round)
		var wg sync.WaitGroup
		outs := make([]*jobs.Job, 4)
		created := make([]bool, 4)
		for i := range outs {
			s := []*postgres.Store{a, b}[i%2]
			wg.Go(func() {
				j := newJob("q")
				j.UniqueKey = key
				out, c, err := s.Insert(ctx, []*jobs.Job{j}, nil)
				if err != nil {
					t.Error(err)
					return
				}
				outs[i], created[i] = out[0], c[0]
			})
		}
		wg.Wait()
		n := 0
		for i := range outs {
			if created[i] {
				n++
			}
			if outs[i] == nil || outs[i].ID != outs[0].ID {
				t.Fatalf("round %d: inserts returned different jobs for one key", round)
			}
		}
		if n != 1 {
			t.Fatalf("round %d: %d inserts created a job with key %s, want 1", round, n, key)
		}
	}
	// Once the job finished, the key is free again.
	js, _, _ := a.Insert(ctx, []*jobs.Job{{Kind: "k", Queue: "q", State: jobs.StateReady, UniqueKey: "k0"}}, nil)
	if _, err := a.Update(ctx, js[0].ID, func(j *jobs.Job) error { j.State = jobs.StateCanceled; return nil }); err != nil {
		t.Fatal(err)
	}
	_, c, err := b.Insert(ctx, []*jobs.Job{{Kind: "k", Queue: "q", State: jobs.StateReady, UniqueKey: "k0"}}, nil)
	if err != nil || !c[0] {
		t.Fatalf("insert after the holder finished: created %v, %v", c, err)
	}
}

// TestMaxPendingAcrossReplicas: two Stores filling one queue at once stop at max_pending.
func TestMaxPendingAcrossReplicas(t *testing.T) {
	a, url := setup(t)
	b := open(t, url)
	const limit = 40
	var wg sync.WaitGroup
	var ok, full atomic.Int64
	for i := range 8 {
		s := []*postgres.Store{a, b}[i%2]
		wg.Go(func() {
			for range 10 {
				_, _, err := s.Insert(context.Background(), []*jobs.Job{newJob("q")}, func(string) int { return limit })
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, jobs.ErrQueueFull):
					full.Add(1)
				default:
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != limit || full.Load() != 80-limit {
		t.Fatalf("%d inserts went in and %d were refused, want %d and %d", ok.Load(), full.Load(), limit, 80-limit)
	}
}

// TestPauseSeenByTheOther: a queue paused by one Store leases nothing from the other, at once,
// and its Paused says so within a poll; resuming wakes the other.
func TestPauseSeenByTheOther(t *testing.T) {
	a, url := setup(t)
	b := open(t, url)
	ctx := context.Background()
	insert(t, a, newJob("q"), newJob("q"))
	tandemtest.WaitFor(t, "b to see the jobs", func() bool { return b.Ready("q") == 2 })
	if err := a.SetPaused(ctx, "q", true); err != nil {
		t.Fatal(err)
	}
	if ids := leaseAll(t, b, jobs.Lease{Queue: "q", N: 5, For: time.Minute}); len(ids) != 0 {
		t.Fatalf("b leased %d from a paused queue", len(ids))
	}
	tandemtest.WaitFor(t, "b to see the pause", func() bool { return b.Paused("q") })
	drain(b.Changes())
	if err := a.SetPaused(ctx, "q", false); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.Changes():
	case <-time.After(5 * time.Second):
		t.Fatal("resume did not wake b")
	}
	tandemtest.WaitFor(t, "b to see the resume and the jobs", func() bool { return !b.Paused("q") && b.Ready("q") > 0 })
	if ids := leaseAll(t, b, jobs.Lease{Queue: "q", N: 5, For: time.Minute}); len(ids) != 2 {
		t.Fatalf("b leased %d after the resume, want 2", len(ids))
	}
}

func drain(c <-chan struct{}) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

// TestNotificationWakesTheOther: a job one Store inserts wakes the other (Changes) and shows in
// its Ready long before a poll (PollInterval an hour here).
func TestNotificationWakesTheOther(t *testing.T) {
	url := tandemtest.Postgres(t)
	slow := func(o *postgres.Options) { o.PollInterval = time.Hour }
	a, b := open(t, url, slow), open(t, url, slow)
	// b's LISTEN may not be up yet: insert until it hears one.
	for i := 0; ; i++ {
		insert(t, a, newJob("q"))
		select {
		case <-b.Changes():
			if b.Ready("q") == 0 {
				t.Fatal("b was woken but its Ready says 0")
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		if i == 50 {
			t.Fatal("b was never woken")
		}
	}
}

// TestNotificationCarriesTheCount: a notification says how many jobs a commit made ready, so the
// other Store's Ready counts all of them without a recount (PollInterval an hour), and its
// dispatcher leases as many as it has room for rather than one.
func TestNotificationCarriesTheCount(t *testing.T) {
	url := tandemtest.Postgres(t)
	slow := func(o *postgres.Options) { o.PollInterval = time.Hour }
	a, b := open(t, url, slow), open(t, url, slow)
	for i := 0; ; i++ { // until b's LISTEN is up and its first recount done
		insert(t, a, newJob("q"))
		if b.Ready("q") == i+1 {
			break
		}
		if i == 50 {
			t.Fatalf("b never counted a's jobs: Ready %d", b.Ready("q"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	before := b.Ready("q")
	batch := make([]*jobs.Job, 40)
	for i := range batch {
		batch[i] = newJob("q")
	}
	insert(t, a, batch...)
	tandemtest.WaitFor(t, "b to count the 40 jobs", func() bool { return b.Ready("q") == before+40 })
}

// TestPollCorrectsTheEstimate: jobs made ready behind the store's back (no notification) show in
// Ready within a poll.
func TestPollCorrectsTheEstimate(t *testing.T) {
	s, url := setup(t)
	insert(t, s, newJob("q"))
	exec(t, url, `INSERT INTO tandem_jobs SELECT gen_random_uuid(), kind, queue, state, priority, run_at, attempt, max_attempts,
		timeout_ns, payload, result, errors, attempted_by, NULL, created_at, updated_at FROM tandem_jobs`)
	tandemtest.WaitFor(t, "Ready to count the job written behind its back", func() bool { return s.Ready("q") == 2 })
}
