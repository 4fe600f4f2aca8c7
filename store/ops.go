package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tandem-run/tandem/jobs"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// Insert stores new jobs in one transaction, all or nothing. For each job it assigns an ID when
// empty and sets CreatedAt; State must be scheduled or ready. A job whose UniqueKey a live job
// holds is not written: that job is returned in its place with created false. When maxPending is
// non-nil and the jobs would take a queue's waiting count over maxPending(queue), nothing is
// written and the error is ErrQueueFull.
func (s *Store) Insert(ctx context.Context, js []*jobs.Job, maxPending func(queue string) int) (out []*jobs.Job, created []bool, err error) {
	for _, j := range js {
		if j.State != jobs.StateReady && j.State != jobs.StateScheduled {
			return nil, nil, fmt.Errorf("store: insert: state must be ready or scheduled, got %q", j.State)
		}
		if j.ID == "" {
			u, err := uuid.NewV7()
			if err != nil {
				return nil, nil, fmt.Errorf("store: new id: %w", err)
			}
			j.ID = u.String()
		} else if _, err := uuid.Parse(j.ID); err != nil {
			return nil, nil, fmt.Errorf("store: insert: bad id %q: %w", j.ID, err)
		}
	}
	out = make([]*jobs.Job, len(js))
	created = make([]bool, len(js))
	err = s.exec(ctx, func(t *txn) error {
		// Checks first: nothing is written unless everything passes.
		adds := map[string]int{}
		keys := map[string]int{} // unique key -> index of the first job in this call holding it
		var uniq *bolt.Bucket
		for i, j := range js {
			out[i], created[i] = nil, false
			if j.UniqueKey != "" {
				if uniq == nil {
					var err error
					if uniq, err = t.scan(bucketUniq); err != nil {
						return err
					}
				}
				if id := uniq.Get([]byte(j.UniqueKey)); id != nil {
					existing, err := t.get(id)
					if err != nil {
						return err
					}
					out[i] = existing.Clone() // the batch may hold it; the caller gets its own
					continue
				}
				if first, dup := keys[j.UniqueKey]; dup {
					out[i] = js[first]
					continue
				}
				keys[j.UniqueKey] = i
			}
			adds[j.Queue]++
		}
		if maxPending != nil {
			for q, n := range adds {
				if limit := maxPending(q); limit > 0 && t.waiting(q)+n > limit {
					return fmt.Errorf("%w: %s holds %d waiting jobs (max_pending %d)", jobs.ErrQueueFull, q, t.waiting(q), limit)
				}
			}
		}
		for i, j := range js {
			if out[i] != nil {
				continue
			}
			j.CreatedAt = t.now
			if err := t.put(nil, j); err != nil {
				return err
			}
			out[i], created[i] = j, true
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	// Each job in out is the caller's own or was decoded for this call, so it is the caller's to
	// keep; only a job named twice in one call (a repeated unique key) is copied, so that no two
	// entries share a record.
	if len(out) > 1 {
		seen := make(map[*jobs.Job]bool, len(out))
		for i, j := range out {
			if seen[j] {
				out[i] = j.Clone()
			}
			seen[j] = true
		}
	}
	return out, created, nil
}

// UpdateQueued is Update that returns as soon as the request is queued for the committer; wait
// blocks until its commit and returns what Update would have. Requests commit in queue order, so
// a write queued after this one can never land before it.
func (s *Store) UpdateQueued(ctx context.Context, id string, fn func(j *jobs.Job) error) (wait func() (*jobs.Job, error), err error) {
	key, err := idKey(id)
	if err != nil {
		return nil, err
	}
	var out *jobs.Job
	done, err := s.send(ctx, func(t *txn) error {
		j, err := t.modify(key, fn)
		if err != nil {
			return err
		}
		out = j // modify's result is a fresh copy that nothing else holds
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

// updater changes jobs inside the transaction of an ApplyQueued request.
type updater struct{ t *txn }

// Update changes one job as Store.Update does, inside the request's transaction, at once. An
// error from fn, or no such job, leaves that job as it was.
func (u updater) Update(id string, fn func(j *jobs.Job) error) {
	if key, err := idKey(id); err == nil {
		_, _ = u.t.modify(key, fn)
	}
}

// ApplyQueued queues fn for the committer and returns once it is queued; fn runs inside the
// transaction of the batch it joins and changes any number of jobs through u. It is for writes whose
// jobs are only known when the committer gets to them, so that one request carries them all (the
// jobs package's attempt starts: those whose handler already returned are left to their
// acknowledgement). Requests commit in queue order, as with UpdateQueued.
func (s *Store) ApplyQueued(ctx context.Context, fn func(u jobs.Updater)) error {
	_, err := s.send(ctx, func(t *txn) error { fn(updater{t}); return nil })
	return err
}

// Update is a group-committed read-modify-write of one job: fn gets a copy of the record and may
// change any field but ID; indexes and counters follow from the old and new record. An error from
// fn aborts this update alone and is returned as is. ErrNotFound when there is no such job.
func (s *Store) Update(ctx context.Context, id string, fn func(j *jobs.Job) error) (*jobs.Job, error) {
	wait, err := s.UpdateQueued(ctx, id, fn)
	if err != nil {
		return nil, err
	}
	return wait()
}

// Lease takes up to n ready jobs of queue, best first (priority, then run_at, then id), marks them
// prefetched -- leased, not started: Attempt and StartedAt stay as they were -- with LeaseUntil
// now+leaseFor, and returns them once that is on disk. A paused queue gives none. Starting a job is
// the caller's write (prefetched -> running, with the attempt and its start time), so that a
// job waiting for a free worker is never taken for a running one, and a crash can tell the two
// apart.
func (s *Store) Lease(ctx context.Context, queue string, n int, leaseFor time.Duration) ([]*jobs.Job, error) {
	js, wait, err := s.LeaseQueued(ctx, jobs.Lease{Queue: queue, N: n, For: leaseFor})
	if err != nil {
		return nil, err
	}
	if err := wait(); err != nil {
		return nil, err
	}
	return js, nil
}

// LeaseQueued is Lease that returns as soon as the jobs are leased in the transaction being built,
// before it is committed; wait blocks until the commit and returns its error. A caller that starts
// the jobs at once lets a short job's acknowledgement join the same commit as its lease, so the
// record is written once. If that commit fails, the jobs were never leased on disk: they stay
// ready there, and a start or an acknowledgement sent for them finds them not prefetched.
//
// It only takes jobs whose state is on disk: a job made ready earlier in the same transaction (just
// inserted, retried, promoted) waits for a later lease, so nothing runs that a failed commit could
// take back from its enqueuer. The jobs returned are shared with the transaction until wait
// returns: read them, clone them to change them.
// l.Cap is left to the runtime, the one process that leases from this file.
func (s *Store) LeaseQueued(ctx context.Context, l jobs.Lease) (js []*jobs.Job, wait func() error, err error) {
	queue, n, leaseFor := l.Queue, l.N, l.For
	if n <= 0 || s.Paused(queue) || s.Ready(queue) == 0 {
		return nil, func() error { return nil }, nil
	}
	var out []*jobs.Job
	leased := make(chan struct{})
	done, err := s.send(ctx, func(t *txn) error {
		out = out[:0]
		if t.isPaused(queue) {
			close(leased)
			return nil
		}
		prefix := queuePrefix(queue)
		b, err := t.scan(bucketReady)
		if err != nil {
			return err
		}
		c := b.Cursor()
		var ids [][]byte
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(ids) < n; k, _ = c.Next() {
			rk, err := parseReadyKey(k)
			if err != nil {
				return err
			}
			if !t.changedInBatch(rk.id) {
				ids = append(ids, append([]byte(nil), rk.id...))
			}
		}
		for _, id := range ids {
			j, err := t.modify(id, func(j *jobs.Job) error {
				lease := t.now.Add(leaseFor)
				j.State, j.LeaseUntil = jobs.StatePrefetched, &lease
				return nil
			})
			if err != nil {
				return err
			}
			out = append(out, j)
		}
		close(leased)
		return nil
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
		default:
			return nil, nil, err
		}
	}
}

// promoteBatch bounds how many jobs one Promote moves per transaction, so it never holds the
// write lock long.
const promoteBatch = 1000

// Promote moves scheduled and retrying jobs whose RunAt is due to ready. It returns how many moved
// and the earliest RunAt still ahead (zero when none).
func (s *Store) Promote(ctx context.Context, now time.Time) (moved int, next time.Time, err error) {
	for {
		var n int
		var more bool
		err := s.exec(ctx, func(t *txn) error {
			n, more, next = 0, false, time.Time{}
			b, err := t.scan(bucketSched)
			if err != nil {
				return err
			}
			c := b.Cursor()
			var ids [][]byte
			for k, _ := c.First(); k != nil; k, _ = c.Next() {
				at := bytesTime(k[:8])
				if at.After(now) {
					next = at
					break
				}
				if len(ids) == promoteBatch {
					more = true
					break
				}
				ids = append(ids, append([]byte(nil), k[8:]...))
			}
			for _, id := range ids {
				if _, err := t.modify(id, func(j *jobs.Job) error { j.State = jobs.StateReady; return nil }); err != nil {
					return err
				}
			}
			n = len(ids)
			return nil
		})
		moved += n
		if err != nil || !more {
			return moved, next, err
		}
	}
}

// Recover hands every job a previous process left leased (prefetched or running) to fn, which gets
// a copy to change and must move it out of those states: how is the jobs package's policy (a
// prefetched job never ran; a running one was interrupted). LeaseUntil is cleared after fn. It
// returns how many; call it once at start, before any Lease. With no job left leased, as after a
// clean stop, it writes nothing.
func (s *Store) Recover(ctx context.Context, fn func(j *jobs.Job)) (int, error) {
	var left bool
	err := s.view(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bucketLease).Cursor().First()
		left = k != nil
		return nil
	})
	if err != nil || !left {
		return 0, err
	}
	var n int
	err = s.exec(ctx, func(t *txn) error {
		b, err := t.scan(bucketLease)
		if err != nil {
			return err
		}
		c := b.Cursor()
		var ids [][]byte
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			ids = append(ids, append([]byte(nil), k[8:]...))
		}
		// Every change is checked before the first is written: a failed request writes nothing.
		olds, news := make([]*jobs.Job, len(ids)), make([]*jobs.Job, len(ids))
		for i, id := range ids {
			old, err := t.get(id)
			if err != nil {
				return err
			}
			j := old.Clone()
			fn(j)
			if j.State.Leased() {
				return fmt.Errorf("store: recover: job %s left %s", old.ID, j.State)
			}
			j.ID, j.LeaseUntil = old.ID, nil
			olds[i], news[i] = old, j
		}
		for i := range ids {
			if err := t.put(olds[i], news[i]); err != nil {
				return err
			}
		}
		n = len(ids)
		return nil
	})
	return n, err
}

// Delete removes a finished job: ErrNotFinished when it has not finished, ErrNotFound when absent.
func (s *Store) Delete(ctx context.Context, id string) error {
	key, err := idKey(id)
	if err != nil {
		return err
	}
	return s.exec(ctx, func(t *txn) error {
		j, err := t.get(key)
		if err != nil {
			return err
		}
		if !j.State.Finished() {
			return fmt.Errorf("%w: job %s is %s", jobs.ErrNotFinished, id, j.State)
		}
		return t.remove(j)
	})
}

// DeleteMany removes, in one transaction, those of ids whose state is one of states, and
// returns how many; ids missing or in another state are left alone. A leased state is refused.
func (s *Store) DeleteMany(ctx context.Context, ids []string, states []jobs.State) (int, error) {
	if err := jobs.CheckDeletable(states); err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	var n int
	err := s.exec(ctx, func(t *txn) error {
		n = 0
		for _, id := range ids {
			key, err := idKey(id)
			if err != nil {
				continue
			}
			j, err := t.get(key)
			if errors.Is(err, jobs.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			if !slices.Contains(states, j.State) {
				continue
			}
			if err := t.remove(j); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Sweep deletes finished jobs that finished before `before`, at most batch (default 500) per
// transaction so the write lock is held briefly, and returns how many.
func (s *Store) Sweep(ctx context.Context, before time.Time, batch int) (int, error) {
	if batch <= 0 {
		batch = 500
	}
	total := 0
	for {
		var n int
		err := s.exec(ctx, func(t *txn) error {
			n = 0
			b, err := t.scan(bucketDone)
			if err != nil {
				return err
			}
			c := b.Cursor()
			var ids [][]byte
			for k, _ := c.First(); k != nil && len(ids) < batch; k, _ = c.Next() {
				if !bytesTime(k[:8]).Before(before) {
					break
				}
				ids = append(ids, append([]byte(nil), k[8:]...))
			}
			for _, id := range ids {
				j, err := t.get(id)
				if err != nil {
					return err
				}
				if err := t.remove(j); err != nil {
					return err
				}
			}
			n = len(ids)
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

// SetPaused pauses or resumes a queue; the flag is persisted.
func (s *Store) SetPaused(ctx context.Context, queue string, paused bool) error {
	if queue == "" {
		return errors.New("store: empty queue name")
	}
	return s.exec(ctx, func(t *txn) error {
		k := []byte(pausedPrefix + queue)
		var err error
		if paused {
			err = t.bucket(bucketMeta).Put(k, []byte{1})
		} else {
			err = t.bucket(bucketMeta).Delete(k)
		}
		if err != nil {
			return fmt.Errorf("%w: paused flag: %w", errWrite, err)
		}
		if t.pausedChanges == nil {
			t.pausedChanges = map[string]bool{}
		}
		t.pausedChanges[queue] = paused
		return nil
	})
}

func (t *txn) isPaused(queue string) bool {
	if p, ok := t.pausedChanges[queue]; ok {
		return p
	}
	return t.s.Paused(queue)
}

// Ping sends an empty request through the committer and waits for its commit: it fails or hangs
// exactly when writes would, which is what a watchdog wants to know.
func (s *Store) Ping(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.exec(context.WithoutCancel(ctx), func(*txn) error { return nil }) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("store: ping: %w", ctx.Err())
	}
}
