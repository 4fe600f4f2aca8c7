package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-run/tandem/jobs"
)

// FirePeriodic inserts j and records slot as the schedule's mark in one transaction, when slot is
// after the recorded mark or there is none; otherwise it writes nothing (see jobs.Store). The
// schedule's row is locked (FOR UPDATE, or the INSERT's conflict wait when it is new) until the
// commit, so replicas that fire the same slot at once queue on it, and the later ones find the
// mark moved and write nothing. It rides the insert committer, batched with the enqueues. j must
// have no unique key. A process's scheduler fires one slot at a time, so a batch holds at most one
// schedule's row; a batch that also waits on another replica's (a unique key that replica's
// uncommitted insert holds, while that replica's batch waits on this row) is a deadlock Postgres
// breaks after deadlock_timeout by failing one batch, whose requests then fail as any failed
// commit's do (the scheduler retries its slot).
func (s *Store) FirePeriodic(ctx context.Context, name string, slot time.Time, j *jobs.Job) (created bool, prev time.Time, err error) {
	if name == "" {
		return false, time.Time{}, errors.New("postgres: fire periodic: empty name")
	}
	if j.UniqueKey != "" {
		return false, time.Time{}, fmt.Errorf("postgres: fire periodic %s: a periodic job has no unique key", name)
	}
	if err := prepareInsert([]*jobs.Job{j}); err != nil {
		return false, time.Time{}, err
	}
	slot = usec(slot)
	err = s.execOn(ctx, s.ins, nil, func(t *txn) error {
		created, prev = false, time.Time{}
		var last time.Time
		err := t.tx.QueryRow(t.ctx, `SELECT last_slot FROM tandem_periodic WHERE name = $1 FOR UPDATE`, name).Scan(&last)
		switch {
		case err == nil:
			prev = last.UTC()
			if !slot.After(prev) {
				return nil
			}
		case !errors.Is(err, pgx.ErrNoRows):
			return dbErr("read periodic mark", err)
		}
		// The row may be new, or another replica may have inserted it since the SELECT: the WHERE
		// then decides, after waiting for that replica's commit.
		rows, err := t.tx.Query(t.ctx, `INSERT INTO tandem_periodic (name, last_slot, last_job) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO UPDATE SET last_slot = EXCLUDED.last_slot, last_job = EXCLUDED.last_job
			WHERE tandem_periodic.last_slot < EXCLUDED.last_slot RETURNING 1`, name, slot, j.ID)
		if err != nil {
			return dbErr("write periodic mark", err)
		}
		n, err := pgx.CollectRows(rows, pgx.RowTo[int])
		if err != nil {
			return dbErr("write periodic mark", err)
		}
		if len(n) == 0 { // another replica created the mark with this slot or a later one
			if err := t.tx.QueryRow(t.ctx, `SELECT last_slot FROM tandem_periodic WHERE name = $1`, name).Scan(&last); err != nil {
				return dbErr("read periodic mark", err)
			}
			prev = last.UTC()
			return nil
		}
		out, made := make([]*jobs.Job, 1), make([]bool, 1)
		if err := t.insert([]*jobs.Job{j}, nil, out, made); err != nil {
			return err
		}
		created = made[0]
		return nil
	})
	if err != nil {
		return false, time.Time{}, err
	}
	return created, prev, nil
}

// PeriodicMarks returns every schedule's mark.
func (s *Store) PeriodicMarks(ctx context.Context) (map[string]jobs.PeriodicMark, error) {
	if s.closed.Load() {
		return nil, jobs.ErrStoreClosed
	}
	rows, err := s.pool.Query(ctx, `SELECT name, last_slot, last_job::text FROM tandem_periodic`)
	if err != nil {
		return nil, fmt.Errorf("postgres: periodic marks: %w", err)
	}
	out := map[string]jobs.PeriodicMark{}
	var name, id string
	var slot time.Time
	_, err = pgx.ForEachRow(rows, []any{&name, &slot, &id}, func() error {
		out[name] = jobs.PeriodicMark{Slot: slot.UTC(), JobID: id}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: periodic marks: %w", err)
	}
	return out, nil
}
