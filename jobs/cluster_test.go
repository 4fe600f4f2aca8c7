package jobs_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-run/tandem/internal/tandemtest"
	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/pool"
	"github.com/tandem-run/tandem/store"
	"github.com/tandem-run/tandem/store/postgres"
)

// The runtime on a shared store: several replicas in one test process, each with a store of its
// own on one real Postgres database, as separate tandem processes would have.

type replica struct {
	rt    *jobs.Runtime
	store *postgres.Store
	pool  *pool.Pool
	stop  func() // stops the runtime, the pool and the store (idempotent)
}

// newReplica starts a runtime named node on the database at url; tweak adjusts its options
// before New, register adds its kinds before Start.
func newReplica(t *testing.T, url, node string, size int, tweak func(*jobs.Options), register func(*jobs.Runtime)) *replica {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	st, err := postgres.Open(ctx, postgres.Options{URL: url, Logger: logger, PollInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p, err := pool.New(pool.Options{Name: "jobs", Size: size, Backlog: pool.MaxBacklog, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	opts := jobs.Options{Store: st, Pool: p, Logger: logger, Node: node, RescueAfter: 900 * time.Millisecond,
		Backoff: func(int) time.Duration { return time.Millisecond }, ShutdownTimeout: 2 * time.Second}
	if tweak != nil {
		tweak(&opts)
	}
	rt, err := jobs.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if register != nil {
		register(rt)
	}
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := false
	r := &replica{rt: rt, store: st, pool: p}
	r.stop = func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := rt.Stop(ctx); err != nil {
			t.Errorf("stop %s: %v", node, err)
		}
		_ = p.Release(ctx)
		st.Close()
	}
	t.Cleanup(r.stop)
	return r
}

func leaders(t *testing.T, rs ...*replica) []string {
	t.Helper()
	var out []string
	for _, r := range rs {
		if r.rt.Leader() {
			out = append(out, r.rt.Node())
		}
	}
	return out
}

// TestSharedLeadershipFailsOver: of two replicas one leads; when it stops, the other takes over,
// and the node list follows.
func TestSharedLeadershipFailsOver(t *testing.T) {
	url := tandemtest.Postgres(t)
	a := newReplica(t, url, "a", 1, nil, nil)
	b := newReplica(t, url, "b", 1, nil, nil)
	tandemtest.WaitFor(t, "one leader", func() bool { return len(leaders(t, a, b)) == 1 })
	nodes, err := a.rt.Nodes(context.Background())
	if err != nil || len(nodes) != 2 || nodes[0].Name != "a" || nodes[1].Name != "b" {
		t.Fatalf("Nodes = %+v, %v; want a and b", nodes, err)
	}
	if nodes[0].Leader == nodes[1].Leader {
		t.Fatalf("Nodes = %+v: want exactly one leader", nodes)
	}
	lead, other := a, b
	if b.rt.Leader() {
		lead, other = b, a
	}
	lead.stop()
	tandemtest.WaitFor(t, "the other replica leads", other.rt.Leader)
	nodes, err = other.rt.Nodes(context.Background())
	if err != nil || len(nodes) != 1 || nodes[0].Name != other.rt.Node() || !nodes[0].Leader {
		t.Fatalf("after the leader stopped, Nodes = %+v, %v", nodes, err)
	}
}

// TestSharedLongJobIsNotRescued: a job that runs for several lease lengths keeps its lease by the
// heartbeat, so the other replica never takes it: one attempt, on one node.
func TestSharedLongJobIsNotRescued(t *testing.T) {
	url := tandemtest.Postgres(t)
	var runs atomic.Int32
	reg := func(rt *jobs.Runtime) {
		_ = rt.RegisterFunc("long", func(ctx context.Context, j *jobs.Job) (any, error) {
			runs.Add(1)
			select {
			case <-time.After(3 * time.Second): // 3+ lease lengths (RescueAfter 900ms)
				return nil, nil
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
		})
	}
	// b leads (it starts first) and serves another queue: were a's lease not renewed, b would
	// rescue the job and a would run it again.
	b := newReplica(t, url, "b", 1, func(o *jobs.Options) { o.Queues = map[string]jobs.QueueOptions{"other": {}} }, reg)
	tandemtest.WaitFor(t, "b to lead", b.rt.Leader)
	a := newReplica(t, url, "a", 1, nil, reg)
	j, _, err := a.rt.Enqueue(context.Background(), jobs.EnqueueParams{Kind: "long"})
	if err != nil {
		t.Fatal(err)
	}
	var got *jobs.Job
	tandemtest.WaitFor(t, "the long job to finish", func() bool {
		got, err = b.rt.Get(context.Background(), j.ID)
		return err == nil && got.State.Finished()
	})
	if got.State != jobs.StateSucceeded || got.Attempt != 1 || len(got.Errors) != 0 || len(got.AttemptedBy) != 1 || runs.Load() != 1 {
		t.Fatalf("job = state %s attempt %d errors %v attempted_by %v, runs %d; want one clean attempt",
			got.State, got.Attempt, got.Errors, got.AttemptedBy, runs.Load())
	}
}

// TestSharedRescueOfAReplicaThatStoppedRenewing: a replica whose store went away (as one that
// died) stops renewing; the other rescues its running job after RescueAfter, records the
// interrupted attempt, and runs it again.
func TestSharedRescueOfAReplicaThatStoppedRenewing(t *testing.T) {
	url := tandemtest.Postgres(t)
	release := make(chan struct{})
	started := make(chan string, 4)
	reg := func(rt *jobs.Runtime) {
		node := rt.Node()
		_ = rt.RegisterFunc("work", func(ctx context.Context, j *jobs.Job) (any, error) {
			started <- node
			if node == "a" {
				<-release // a hangs until the test lets it go, long after its store is gone
			}
			return nil, nil
		})
	}
	a := newReplica(t, url, "a", 1, nil, reg)
	j, _, err := a.rt.Enqueue(context.Background(), jobs.EnqueueParams{Kind: "work", MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	if n := <-started; n != "a" {
		t.Fatalf("started on %s, want a", n)
	}
	// Wait until a's start is written, so the attempt counts.
	tandemtest.WaitFor(t, "the attempt on a to be written", func() bool {
		got, err := a.rt.Get(context.Background(), j.ID)
		return err == nil && got.State == jobs.StateRunning
	})
	a.store.Close() // a can no longer renew anything: to the others, it died
	b := newReplica(t, url, "b", 1, nil, reg)
	t0 := time.Now()
	select {
	case n := <-started:
		if n != "b" {
			t.Fatalf("second start on %s, want b", n)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("b never rescued the job")
	}
	if d := time.Since(t0); d < 500*time.Millisecond {
		t.Errorf("rescued %s after b started: before the lease (900ms) could have run out", d)
	}
	var got *jobs.Job
	tandemtest.WaitFor(t, "the job to succeed on b", func() bool {
		got, err = b.rt.Get(context.Background(), j.ID)
		return err == nil && got.State == jobs.StateSucceeded
	})
	if got.Attempt != 2 || len(got.Errors) != 1 || got.Errors[0].Attempt != 1 ||
		len(got.AttemptedBy) != 2 || got.AttemptedBy[0] != "a" || got.AttemptedBy[1] != "b" {
		t.Fatalf("job = attempt %d errors %+v attempted_by %v; want attempt 2, a's interrupted attempt recorded, [a b]",
			got.Attempt, got.Errors, got.AttemptedBy)
	}
	close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_ = a.rt.Stop(ctx) // its acknowledgement cannot land: Stop gives up at its deadline
}

// TestSharedCancelOfAJobAnotherReplicaRuns: canceled through one replica, the job's handler on
// the other is stopped within a heartbeat, and the job ends canceled.
func TestSharedCancelOfAJobAnotherReplicaRuns(t *testing.T) {
	url := tandemtest.Postgres(t)
	running := make(chan struct{}, 1)
	stopped := make(chan error, 1)
	a := newReplica(t, url, "a", 1, nil, func(rt *jobs.Runtime) {
		_ = rt.RegisterFunc("wait", func(ctx context.Context, j *jobs.Job) (any, error) {
			running <- struct{}{}
			<-ctx.Done()
			stopped <- context.Cause(ctx)
			return nil, ctx.Err()
		})
	})
	b := newReplica(t, url, "b", 0+1, func(o *jobs.Options) { o.Queues = map[string]jobs.QueueOptions{"other": {}} }, nil)
	j, _, err := a.rt.Enqueue(context.Background(), jobs.EnqueueParams{Kind: "wait"})
	if err != nil {
		t.Fatal(err)
	}
	<-running
	tandemtest.WaitFor(t, "the attempt on a to be written", func() bool {
		got, err := b.rt.Get(context.Background(), j.ID)
		return err == nil && got.State == jobs.StateRunning
	})
	got, err := b.rt.Cancel(context.Background(), j.ID)
	if err != nil || got.State != jobs.StateCanceled {
		t.Fatalf("Cancel through b = %+v, %v; want canceled", got, err)
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler on a was never stopped")
	}
	time.Sleep(300 * time.Millisecond) // a's acknowledgement, if it wrongly landed
	if got, err := b.rt.Get(context.Background(), j.ID); err != nil || got.State != jobs.StateCanceled {
		t.Fatalf("after a's attempt ended, job = %+v, %v; want still canceled", got, err)
	}
}

// TestSharedConcurrencyCapHoldsAcrossReplicas: a cap of 2 means 2 running in the cluster, though
// each replica has room for 4.
func TestSharedConcurrencyCapHoldsAcrossReplicas(t *testing.T) {
	url := tandemtest.Postgres(t)
	var now, peak atomic.Int32
	var done atomic.Int32
	reg := func(rt *jobs.Runtime) {
		_ = rt.RegisterFunc("slow", func(ctx context.Context, j *jobs.Job) (any, error) {
			n := now.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			time.Sleep(100 * time.Millisecond)
			now.Add(-1)
			done.Add(1)
			return nil, nil
		})
	}
	capped := func(o *jobs.Options) {
		o.Queues = map[string]jobs.QueueOptions{"default": {Concurrency: 2}}
		o.Prefetch = 0
	}
	a := newReplica(t, url, "a", 4, capped, reg)
	newReplica(t, url, "b", 4, capped, reg)
	ps := make([]jobs.EnqueueParams, 12)
	for i := range ps {
		ps[i] = jobs.EnqueueParams{Kind: "slow"}
	}
	if _, _, err := a.rt.EnqueueBatch(context.Background(), ps); err != nil {
		t.Fatal(err)
	}
	tandemtest.WaitFor(t, "12 jobs done", func() bool { return done.Load() == 12 })
	if p := peak.Load(); p != 2 {
		t.Fatalf("peak running across both replicas = %d, want 2 (the cap)", p)
	}
}

// TestEnqueueTx: a job enqueued in the caller's transaction exists if and only if it commits.
func TestEnqueueTx(t *testing.T) {
	url := tandemtest.Postgres(t)
	ran := make(chan string, 4)
	a := newReplica(t, url, "a", 1, nil, func(rt *jobs.Runtime) {
		_ = rt.RegisterFunc("mail", func(ctx context.Context, j *jobs.Job) (any, error) {
			ran <- j.ID
			return nil, nil
		})
	})
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE users (email text)`); err != nil {
		t.Fatal(err)
	}
	enqueue := func(commit bool) string {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO users VALUES ('a@example.com')`); err != nil {
			t.Fatal(err)
		}
		js, created, err := a.rt.EnqueueTx(ctx, tx, jobs.EnqueueParams{Kind: "mail"})
		if err != nil || !created[0] {
			t.Fatalf("EnqueueTx = %v, %v", created, err)
		}
		if commit {
			err = tx.Commit(ctx)
		} else {
			err = tx.Rollback(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
		return js[0].ID
	}
	rolledBack := enqueue(false)
	committed := enqueue(true)
	select {
	case id := <-ran:
		if id != committed {
			t.Fatalf("ran %s, want the committed job %s", id, committed)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the committed job never ran")
	}
	if _, err := a.rt.Get(ctx, rolledBack); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("rolled-back job: Get = %v, want ErrNotFound", err)
	}
	select {
	case id := <-ran:
		t.Fatalf("ran %s too", id)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestEnqueueTxNeedsPostgres: on bbolt, EnqueueTx says why it cannot.
func TestEnqueueTxNeedsPostgres(t *testing.T) {
	st, err := store.Open(context.Background(), store.Options{Path: filepath.Join(t.TempDir(), "j.db"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p, err := pool.New(pool.Options{Name: "jobs", Size: 1, Backlog: pool.MaxBacklog})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(context.Background())
	rt, err := jobs.New(jobs.Options{Store: st, Pool: p})
	if err != nil {
		t.Fatal(err)
	}
	_ = rt.RegisterFunc("mail", func(context.Context, *jobs.Job) (any, error) { return nil, nil })
	if _, _, err := rt.EnqueueTx(context.Background(), nil, jobs.EnqueueParams{Kind: "mail"}); !errors.Is(err, jobs.ErrTxUnsupported) {
		t.Fatalf("EnqueueTx on bbolt = %v, want ErrTxUnsupported", err)
	}
	if rt.Shared() || !rt.Leader() {
		t.Fatalf("bbolt runtime: Shared %v Leader %v, want false, true", rt.Shared(), rt.Leader())
	}
	nodes, err := rt.Nodes(context.Background())
	if err != nil || len(nodes) != 1 || nodes[0].Name != rt.Node() || !nodes[0].Leader {
		t.Fatalf("bbolt Nodes = %+v, %v; want this process alone, leading", nodes, err)
	}
}
