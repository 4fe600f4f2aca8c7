package postgres_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/store/postgres"
)

// TestRenewExpiredAcrossReplicas: the Store that leased a job renews it; another cannot, and
// learns it does not hold it; a lease that ran out shows in either's Expired, and once rescued
// (and leased by the other) the first's Renew reports it lost.
func TestRenewExpiredAcrossReplicas(t *testing.T) {
	a, url := setup(t)
	b := open(t, url)
	ctx := context.Background()
	j := insert(t, a, newJob("q"))[0]
	js, wait, err := a.LeaseQueued(ctx, jobs.Lease{Queue: "q", N: 1, For: time.Minute})
	if err != nil || len(js) != 1 || wait() != nil {
		t.Fatalf("lease: %v %v", js, err)
	}
	until := time.Now().Add(-time.Second) // in the past: expired at once
	if lost, err := a.Renew(ctx, []string{j.ID}, until); err != nil || len(lost) != 0 {
		t.Fatalf("a.Renew = %v, %v; want none lost", lost, err)
	}
	if lost, err := b.Renew(ctx, []string{j.ID}, time.Now().Add(time.Hour)); err != nil || !slices.Equal(lost, []string{j.ID}) {
		t.Fatalf("b.Renew of a's lease = %v, %v; want it lost", lost, err)
	}
	for _, s := range []*postgres.Store{a, b} {
		ids, err := s.Expired(ctx, time.Now(), 10)
		if err != nil || !slices.Equal(ids, []string{j.ID}) {
			t.Fatalf("Expired = %v, %v; want the job a renewed into the past", ids, err)
		}
	}
	// b, leading, rescues it, and leases it again itself.
	if _, err := b.Update(ctx, j.ID, func(j *jobs.Job) error { j.State, j.LeaseUntil = jobs.StateReady, nil; return nil }); err != nil {
		t.Fatal(err)
	}
	tandemtest.WaitFor(t, "b to count the rescued job", func() bool { return b.Ready("q") == 1 })
	if got := leaseAll(t, b, jobs.Lease{Queue: "q", N: 1, For: time.Minute}); len(got) != 1 {
		t.Fatalf("b leased %v", got)
	}
	if lost, err := a.Renew(ctx, []string{j.ID}, time.Now().Add(time.Hour)); err != nil || !slices.Equal(lost, []string{j.ID}) {
		t.Fatalf("a.Renew after b took the job = %v, %v; want it lost", lost, err)
	}
	if lost, err := b.Renew(ctx, []string{j.ID, "nonsense"}, time.Now().Add(time.Hour)); err != nil || !slices.Equal(lost, []string{"nonsense"}) {
		t.Fatalf("b.Renew = %v, %v", lost, err)
	}
	if ids, _ := a.Expired(ctx, time.Now(), 10); len(ids) != 0 {
		t.Fatalf("Expired after the renewal = %v", ids)
	}
	if n, err := a.Recover(ctx, func(*jobs.Job) { t.Fatal("Recover handed a job") }); n != 0 || err != nil {
		t.Fatalf("Recover = %d, %v", n, err)
	}
}

// TestLeadershipFailsOver: one node leads; another takes over when the leader's ttl runs out, or
// at once when it leaves; Nodes lists them with the leader marked.
func TestLeadershipFailsOver(t *testing.T) {
	url := tandemtest.Postgres(t)
	clock := tandemtest.NewClock(time.Now())
	withClock := func(o *postgres.Options) { o.Now = clock.Now }
	a, b := open(t, url, withClock), open(t, url, withClock)
	ctx := context.Background()
	na := jobs.Node{Name: "a:1", Version: "v1", StartedAt: clock.Now(), Running: 2, Pools: map[string]jobs.NodePool{"jobs": {Size: 8, Running: 2}}}
	nb := jobs.Node{Name: "b:2", Version: "v1", StartedAt: clock.Now()}
	beat := func(s *postgres.Store, n jobs.Node) bool {
		t.Helper()
		lead, err := s.Heartbeat(ctx, n, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return lead
	}
	if !beat(a, na) || beat(b, nb) || !beat(a, na) {
		t.Fatal("a should lead, b not, and a keep it")
	}
	ns, err := b.Nodes(ctx, clock.Now().Add(-time.Second))
	if err != nil || len(ns) != 2 || ns[0].Name != "a:1" || !ns[0].Leader || ns[1].Leader || ns[0].Pools["jobs"].Size != 8 || ns[0].Running != 2 {
		t.Fatalf("Nodes = %+v, %v", ns, err)
	}
	clock.Advance(11 * time.Second) // a's leadership ran out, and its heartbeat is old
	if !beat(b, nb) || beat(a, na) {
		t.Fatal("b should take over the expired leadership, and a not take it back")
	}
	ns, _ = b.Nodes(ctx, clock.Now().Add(-time.Second))
	if len(ns) != 2 || ns[0].Leader || !ns[1].Leader {
		t.Fatalf("Nodes after failover = %+v", ns)
	}
	if err := b.Leave(ctx, nb.Name); err != nil {
		t.Fatal(err)
	}
	if !beat(a, na) {
		t.Fatal("a should lead at once after b left")
	}
	ns, _ = a.Nodes(ctx, clock.Now().Add(-time.Second))
	if len(ns) != 1 || ns[0].Name != "a:1" {
		t.Fatalf("Nodes after b left = %+v", ns)
	}
}

// TestInsertTx: jobs inserted in a caller's transaction exist iff it commits, and wake the
// other Store when it does.
func TestInsertTx(t *testing.T) {
	a, url := setup(t)
	b := open(t, url)
	ctx := context.Background()
	tx, err := a.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out, created, err := a.InsertTx(ctx, tx, []*jobs.Job{newJob("tx")}, nil)
	if err != nil || !created[0] {
		t.Fatalf("InsertTx: %v %v", created, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Get(ctx, out[0].ID); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("job of a rolled-back transaction: %v", err)
	}
	for i := 0; ; i++ { // until b's LISTEN is up and hears one
		drain(b.Changes())
		tx, err = a.Pool().Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out, _, err = a.InsertTx(ctx, tx, []*jobs.Job{newJob("tx")}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := b.Get(ctx, out[0].ID)
		if err != nil || got.State != jobs.StateReady {
			t.Fatalf("job of a committed transaction: %v %v", got, err)
		}
		select {
		case <-b.Changes():
			tandemtest.WaitFor(t, "a to count the jobs", func() bool { return a.Ready("tx") == i+1 })
			return
		case <-time.After(100 * time.Millisecond):
		}
		if i == 50 {
			t.Fatal("b never woken by a committed InsertTx")
		}
	}
}

// TestPromoteSweepDeleteList: the maintenance writes and paging, as the bbolt store does them.
func TestPromoteSweepDeleteList(t *testing.T) {
	s, _ := setup(t)
	ctx := context.Background()
	now := time.Now()
	due, later := newJob("q"), newJob("q")
	due.State, due.RunAt = jobs.StateScheduled, now.Add(-time.Second)
	later.State, later.RunAt = jobs.StateScheduled, now.Add(time.Hour)
	insert(t, s, due, later)
	moved, next, err := s.Promote(ctx, now)
	if err != nil || moved != 1 || !next.Equal(later.RunAt) {
		t.Fatalf("Promote = %d, %v, %v; want 1 and the later job's RunAt %v", moved, next, err, later.RunAt)
	}
	if got, _ := s.Get(ctx, due.ID); got.State != jobs.StateReady || s.Ready("q") != 1 {
		t.Fatalf("promoted job %s, Ready %d", got.State, s.Ready("q"))
	}
	if err := s.Delete(ctx, due.ID); !errors.Is(err, jobs.ErrNotFinished) {
		t.Fatalf("Delete of a ready job = %v", err)
	}
	fin := now.Add(-time.Hour)
	if _, err := s.Update(ctx, due.ID, func(j *jobs.Job) error { j.State, j.FinishedAt = jobs.StateSucceeded, &fin; return nil }); err != nil {
		t.Fatal(err)
	}
	var all []*jobs.Job
	for range 30 {
		all = append(all, newJob("q"))
	}
	insert(t, s, all...)
	var ids []string
	cursor := ""
	for range 10 {
		page, next, err := s.List(ctx, jobs.Filter{Queue: "q", Limit: 7, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range page {
			ids = append(ids, j.ID)
		}
		if cursor = next; cursor == "" {
			break
		}
	}
	if len(ids) != 32 || !slices.IsSortedFunc(ids, func(a, b string) int { return strings.Compare(b, a) }) {
		t.Fatalf("List paged %d jobs (want 32), newest first: %v", len(ids), ids)
	}
	if _, _, err := s.List(ctx, jobs.Filter{Cursor: "zz"}); !errors.Is(err, jobs.ErrBadCursor) {
		t.Fatalf("List with a foreign cursor = %v", err)
	}
	if page, _, _ := s.List(ctx, jobs.Filter{State: jobs.StateSucceeded}); len(page) != 1 || page[0].ID != due.ID {
		t.Fatalf("List succeeded = %v", page)
	}
	if n, err := s.Sweep(ctx, now, 0); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v", n, err)
	}
	if err := s.Delete(ctx, due.ID); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("Delete of a swept job = %v", err)
	}
	if _, err := s.Update(ctx, all[0].ID, func(j *jobs.Job) error { j.State = jobs.StateCanceled; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, all[0].ID); err != nil {
		t.Fatal(err)
	}
	qs, err := s.Queues(ctx)
	if err != nil || len(qs) != 1 || qs[0].Counts[jobs.StateReady] != 29 || qs[0].Counts[jobs.StateScheduled] != 1 || qs[0].Counts[jobs.StateSucceeded] != 0 {
		t.Fatalf("Queues = %+v, %v", qs, err)
	}
}

// TestPostgresDownAndBack: with Postgres stopped, writes and reads fail with errors (no panic, no
// hang); once it is back the same Store works again, its LISTEN connection too.
func TestPostgresDownAndBack(t *testing.T) {
	srv := tandemtest.StartPostgres(t)
	url := srv.NewDatabase(t)
	a, b := open(t, url, func(o *postgres.Options) { o.PollInterval = time.Hour }), open(t, url)
	ctx := context.Background()
	insert(t, a, newJob("q"))
	srv.Stop()
	if _, _, err := a.Insert(ctx, []*jobs.Job{newJob("q")}, nil); err == nil {
		t.Fatal("Insert with Postgres down succeeded")
	} else {
		t.Log(err)
	}
	if _, err := a.Get(ctx, "0190a0a0-0000-7000-8000-000000000000"); err == nil || errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("Get with Postgres down = %v, want a connection error", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if err := a.Ping(pctx); err == nil {
		t.Fatal("Ping with Postgres down succeeded")
	}
	cancel()
	srv.Start()
	tandemtest.WaitFor(t, "a to write again", func() bool {
		_, _, err := a.Insert(ctx, []*jobs.Job{newJob("q")}, nil)
		return err == nil
	})
	// a's LISTEN connection is back: b's inserts wake it (a polls once an hour).
	deadline := time.Now().Add(10 * time.Second)
	for woken := false; !woken; {
		drain(a.Changes())
		insert(t, b, newJob("other"))
		select {
		case <-a.Changes():
			woken = true
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("a's LISTEN never came back")
		}
	}
}

// TestRedact: passwords never reach logs.
func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:secret@h:5432/db?sslmode=disable": "postgres://u:xxxxx@h:5432/db?sslmode=disable",
		"postgres://u@h/db?password=secret":             "postgres://u@h/db?password=xxxxx",
		"host=h user=u password=secret dbname=d":        "host=h user=u password=xxxxx dbname=d",
		"host=h password='se cret' dbname=d":            "host=h password=xxxxx dbname=d",
		"postgres://h/db":                               "postgres://h/db",
	} {
		if got := postgres.Redact(in); got != want || strings.Contains(got, "secret") {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
	_, err := postgres.Open(context.Background(), postgres.Options{URL: "postgres://u:secret@127.0.0.1:1/db?sslmode=disable", ConnectTimeout: 300 * time.Millisecond})
	if err == nil || strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), "127.0.0.1:1/db") {
		t.Fatalf("Open of an unreachable database: %v; want an error naming host:port/db without the password", err)
	}
}
