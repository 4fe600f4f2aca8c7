package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-run/tandem/jobs"
)

// Update is a group-committed read-modify-write of one job (see jobs.Store).
func (s *Store) Update(ctx context.Context, id string, fn func(j *jobs.Job) error) (*jobs.Job, error) {
	wait, err := s.UpdateQueued(ctx, id, fn)
	if err != nil {
		return nil, err
	}
	return wait()
}

// UpdateQueued is Update that returns once the request is queued. The record is read with the
// batch's others, in one SELECT ... FOR UPDATE.
func (s *Store) UpdateQueued(ctx context.Context, id string, fn func(j *jobs.Job) error) (wait func() (*jobs.Job, error), err error) {
	var out *jobs.Job
	done, err := s.send(ctx, []string{id}, func(t *txn) error {
		j, err := t.modify(id, fn)
		if err != nil {
			return err
		}
		out = j
		return nil
	})
	if err != nil {
		return nil, err
	}
	return func() (*jobs.Job, error) {
		if err := <-done; err != nil {
			return nil, err
		}
		return out, nil
	}, nil
}

// updater collects the changes of an ApplyQueued request.
type updater struct {
	ids []string
	fns []func(j *jobs.Job) error
}

// Update notes a change of one job, made once fn of ApplyQueued has returned: the jobs it named are
// then read in one SELECT ... FOR UPDATE and changed in order, each as Store.Update does. So it
// always returns nil: a change whose job is missing, or whose fn fails, is left out (the job stays
// as it was) without a report. jobs' writeStarts, the one caller, ignores the error anyway: its
// acknowledgements see what happened.
func (u *updater) Update(id string, fn func(j *jobs.Job) error) {
	u.ids = append(u.ids, id)
	u.fns = append(u.fns, fn)
}

// ApplyQueued queues fn, which runs inside the commit its request joins (see Updater.Update for
// how its changes are read and made).
func (s *Store) ApplyQueued(ctx context.Context, fn func(u jobs.Updater)) error {
	_, err := s.send(ctx, nil, func(t *txn) error {
		u := &updater{}
		fn(u)
		if err := t.load(u.ids); err != nil {
			return err
		}
		for i, id := range u.ids {
			if _, err := t.modify(id, u.fns[i]); err != nil {
				if f := (fatal{}); errors.As(err, &f) {
					return err
				}
			}
		}
		return nil
	})
	return err
}

// LeaseQueued takes up to l.N ready jobs of l.Queue, best first, with one UPDATE ... WHERE id IN
// (SELECT ... FOR UPDATE SKIP LOCKED), so processes leasing at once never take one job twice and
// never wait on each other. A paused queue gives none (checked in the same statement). With l.Cap,
// the capped leases of a queue are serialized across processes by an advisory lock held to the
// commit, and the statement takes no more than Cap minus the queue's leased jobs.
//
// It returns once the jobs are leased in the transaction being built, before its commit, as the
// bbolt store does (see jobs.Store); wait reports the commit. Jobs the batch itself wrote (just
// inserted, retried, promoted) are left to a later lease, so nothing runs that a failed commit
// could take back.
func (s *Store) LeaseQueued(ctx context.Context, l jobs.Lease) (js []*jobs.Job, wait func() error, err error) {
	if l.N <= 0 || s.Paused(l.Queue) || s.Ready(l.Queue) == 0 {
		return nil, func() error { return nil }, nil
	}
	var out []*jobs.Job
	leased := make(chan struct{})
	done, err := s.send(ctx, nil, func(t *txn) error {
		defer close(leased)
		var err error
		out, err = t.lease(l)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	select {
	case <-leased:
		return out, sync.OnceValue(func() error { return <-done }), nil
	case err := <-done:
		select {
		case <-leased: // leased, then committed or failed: either way the caller learns of the jobs
			return out, func() error { return err }, nil
		default: // the batch failed before the lease ran
			return nil, nil, err
		}
	}
}

// leaseSQL picks and locks the jobs; the batch writes them prefetched at its flush, once, with
// the acknowledgements that joined it.
var leaseSQL = `SELECT ` + jobColumns + ` FROM tandem_jobs
	WHERE queue = $1 AND state = 'ready' AND NOT (id = ANY($3::uuid[]))
		AND NOT EXISTS (SELECT 1 FROM tandem_queues WHERE name = $1 AND paused)
	ORDER BY priority DESC, run_at, tandem_jobs.id
	LIMIT %s
	FOR UPDATE SKIP LOCKED`

// jobColumnsOfJ is jobColumns qualified by the table alias j (UPDATE ... FROM ... RETURNING).
var jobColumnsOfJ = "j." + strings.ReplaceAll(strings.Join(strings.Fields(jobColumns), " "), ", ", ", j.")

var (
	leaseUncapped = fmt.Sprintf(leaseSQL, "$2")
	// The cap's count runs after the advisory lock was taken (a statement before), so it sees the
	// leases of every process that held it before; $4 adds the batch's own, not written yet.
	leaseCapped = fmt.Sprintf(leaseSQL, `GREATEST(0, LEAST($2::int8, $4::int8 - $5::int8 - (SELECT count(*) FROM tandem_jobs WHERE queue = $1 AND state IN ('prefetched', 'running'))))`)
)

// pendingLeases counts the batch's leases of queue not written yet.
func (t *txn) pendingLeases(queue string) int {
	n := 0
	for _, id := range t.dirty {
		e := t.cache[id]
		if e.cur != nil && e.cur.Queue == queue && e.cur.State.Leased() && (e.written == nil || !e.written.State.Leased()) {
			n++
		}
	}
	return n
}

func (t *txn) lease(l jobs.Lease) ([]*jobs.Job, error) {
	until := usec(t.now.Add(l.For))
	args := []any{l.Queue, l.N, t.changedIDs()}
	b := &pgx.Batch{}
	query := leaseUncapped
	if l.Cap > 0 {
		b.Queue(`SELECT pg_advisory_xact_lock(hashtext('tandem.cap'), hashtext($1))`, l.Queue)
		query = leaseCapped
		args = append(args, l.Cap, t.pendingLeases(l.Queue))
	}
	var out []*jobs.Job
	b.Queue(query, args...).Query(func(rows pgx.Rows) error {
		var err error
		out, err = scanJobs(rows)
		return err
	})
	if err := t.tx.SendBatch(t.ctx, b).Close(); err != nil {
		return nil, dbErr("lease", err)
	}
	slices.SortFunc(out, func(a, b *jobs.Job) int {
		if a.Priority != b.Priority {
			return b.Priority - a.Priority
		}
		if c := a.RunAt.Compare(b.RunAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	for i, j := range out {
		t.cache[j.ID] = &entry{written: j, cur: j}
		leased := j.Clone()
		leased.State, leased.LeaseUntil = jobs.StatePrefetched, &until
		t.put(leased)
		out[i] = leased
	}
	if len(out) < l.N && l.Cap == 0 {
		// The queue has no more to lease now: say so until a recount or a notification says
		// otherwise, so the dispatcher does not ask again and again.
		if t.emptied == nil {
			t.emptied = map[string]bool{}
			t.emptiedAt = t.s.est.epochNow()
		}
		t.emptied[l.Queue] = true
	}
	return out, nil
}

// promoteBatch bounds how many jobs one Promote moves per commit.
const promoteBatch = 1000

// Promote moves due scheduled and retrying jobs to ready, promoteBatch per commit.
func (s *Store) Promote(ctx context.Context, now time.Time) (moved int, next time.Time, err error) {
	now = usec(now)
	for {
		var n int
		err := s.exec(ctx, nil, func(t *txn) error {
			n, next = 0, time.Time{}
			if err := t.flush(); err != nil {
				return err
			}
			rows, err := t.tx.Query(t.ctx, `WITH due AS (
					SELECT id, state FROM tandem_jobs
					WHERE state IN ('scheduled', 'retrying') AND run_at <= $1 AND NOT (id = ANY($4::uuid[]))
					ORDER BY run_at LIMIT $2 FOR UPDATE SKIP LOCKED)
				UPDATE tandem_jobs AS j SET state = 'ready', updated_at = $3 FROM due WHERE j.id = due.id
				RETURNING `+jobColumnsOfJ+`, due.state`, now, promoteBatch, usec(s.opts.Now()), t.changedIDs())
			if err != nil {
				return dbErr("promote", err)
			}
			defer rows.Close()
			for rows.Next() {
				var old string
				j, err := scanJob(rows, &old)
				if err != nil {
					return dbErr("promote", err)
				}
				prev := j.Clone()
				prev.State = jobs.State(old)
				t.cache[j.ID] = &entry{written: j, cur: j}
				t.changed[j.ID] = true
				t.transition(prev, j)
				n++
			}
			if err := rows.Err(); err != nil {
				return dbErr("promote", err)
			}
			var at *time.Time
			if err := t.tx.QueryRow(t.ctx, `SELECT min(run_at) FROM tandem_jobs WHERE state IN ('scheduled', 'retrying') AND run_at > $1`, now).Scan(&at); err != nil {
				return dbErr("promote", err)
			}
			if at != nil {
				next = at.UTC()
			}
			return nil
		})
		moved += n
		if err != nil || n < promoteBatch {
			return moved, next, err
		}
	}
}

// Recover hands nothing to fn: the store is shared, so it cannot tell a dead process's leases from
// a live one's; the leader rescues leases that ran out (Expired). After Close it is
// jobs.ErrStoreClosed, as every method is.
func (s *Store) Recover(context.Context, func(j *jobs.Job)) (int, error) {
	if s.closed.Load() {
		return 0, jobs.ErrStoreClosed
	}
	return 0, nil
}

// Delete removes a finished job.
func (s *Store) Delete(ctx context.Context, id string) error {
	return s.exec(ctx, []string{id}, func(t *txn) error {
		j, err := t.get(id)
		if err != nil {
			return err
		}
		if !j.State.Finished() {
			return fmt.Errorf("%w: job %s is %s", jobs.ErrNotFinished, id, j.State)
		}
		t.remove(j.ID)
		return nil
	})
}

// DeleteMany removes, in one commit, those of ids whose state is one of states, and returns how
// many; ids missing or in another state are left alone. A leased state is refused.
func (s *Store) DeleteMany(ctx context.Context, ids []string, states []jobs.State) (int, error) {
	if err := jobs.CheckDeletable(states); err != nil {
		return 0, fmt.Errorf("postgres: %w", err)
	}
	var n int
	err := s.exec(ctx, ids, func(t *txn) error {
		n = 0
		for _, id := range ids {
			j, err := t.get(id)
			if errors.Is(err, jobs.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			if slices.Contains(states, j.State) {
				t.remove(j.ID)
				n++
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Sweep deletes the jobs that finished before `before`, batch (default 500) per commit.
func (s *Store) Sweep(ctx context.Context, before time.Time, batch int) (int, error) {
	if batch <= 0 {
		batch = 500
	}
	total := 0
	for {
		var n int
		err := s.exec(ctx, nil, func(t *txn) error {
			n = 0
			if err := t.flush(); err != nil {
				return err
			}
			rows, err := t.tx.Query(t.ctx, `DELETE FROM tandem_jobs WHERE id IN (
					SELECT id FROM tandem_jobs
					WHERE state IN ('succeeded', 'dead', 'canceled') AND COALESCE(finished_at, updated_at) < $1
					ORDER BY COALESCE(finished_at, updated_at) LIMIT $2 FOR UPDATE SKIP LOCKED)
				RETURNING id::text, queue, state`, usec(before), batch)
			if err != nil {
				return dbErr("sweep", err)
			}
			var id, q, st string
			_, err = pgx.ForEachRow(rows, []any{&id, &q, &st}, func() error {
				t.cache[id] = &entry{}
				t.changed[id] = true
				t.transition(&jobs.Job{Queue: q, State: jobs.State(st)}, nil)
				n++
				return nil
			})
			if err != nil {
				return dbErr("sweep", err)
			}
			return nil
		})
		total += n
		if err != nil || n < batch {
			return total, err
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}

// SetPaused pauses or resumes a queue, durably, and wakes the other processes when it resumes.
func (s *Store) SetPaused(ctx context.Context, queue string, paused bool) error {
	if queue == "" {
		return errors.New("postgres: empty queue name")
	}
	return s.exec(ctx, nil, func(t *txn) error {
		if _, err := t.tx.Exec(t.ctx, `INSERT INTO tandem_queues (name, paused) VALUES ($1, $2)
			ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused`, queue, paused); err != nil {
			return dbErr("set paused", err)
		}
		if t.paused == nil {
			t.paused = map[string]bool{}
		}
		t.paused[queue] = paused
		if t.newQueues == nil {
			t.newQueues = map[string]bool{}
		}
		t.newQueues[queue] = true
		if !paused {
			t.notify[queue] += 0 // a resume: how many wait is the listeners' recount's to tell
		}
		return nil
	})
}

// Ping sends an empty request through the committer and waits for its commit: it fails or hangs
// exactly when writes would.
func (s *Store) Ping(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.exec(context.WithoutCancel(ctx), nil, func(*txn) error { return nil }) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("postgres: ping: %w", ctx.Err())
	}
}
