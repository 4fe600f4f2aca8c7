package postgres

import (
	"context"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tandem-run/tandem/jobs"
)

// Get returns one job as committed, or jobs.ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (*jobs.Job, error) {
	if s.closed.Load() {
		return nil, jobs.ErrStoreClosed
	}
	if _, err := uuid.Parse(id); err != nil {
		return nil, fmt.Errorf("%w: bad id %q", jobs.ErrNotFound, id)
	}
	j, err := scanJob(s.pool.QueryRow(ctx, `SELECT `+jobColumns+` FROM tandem_jobs WHERE id = $1`, id))
	if err == pgx.ErrNoRows {
		return nil, fmt.Errorf("%w: job %s", jobs.ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: get job %s: %w", id, err)
	}
	return j, nil
}

// GetMany returns the jobs of ids that exist, in the order of ids, in one query.
func (s *Store) GetMany(ctx context.Context, ids []string) ([]*jobs.Job, error) {
	if s.closed.Load() {
		return nil, jobs.ErrStoreClosed
	}
	valid := make([]string, 0, len(ids))
	for _, id := range ids {
		if u, err := uuid.Parse(id); err == nil {
			valid = append(valid, u.String()) // id::text's form
		}
	}
	if len(valid) == 0 {
		return []*jobs.Job{}, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT `+jobColumns+` FROM tandem_jobs WHERE id = ANY($1::uuid[])`, valid)
	if err != nil {
		return nil, fmt.Errorf("postgres: get %d jobs: %w", len(valid), err)
	}
	found, err := scanJobs(rows)
	if err != nil {
		return nil, fmt.Errorf("postgres: get %d jobs: %w", len(valid), err)
	}
	byID := make(map[string]*jobs.Job, len(found))
	for _, j := range found {
		byID[j.ID] = j
	}
	out := make([]*jobs.Job, 0, len(found))
	for _, id := range valid {
		if j := byID[id]; j != nil {
			out = append(out, j)
			delete(byID, id) // an id named twice is returned once
		}
	}
	return out, nil
}

// List returns the jobs that match f, newest first (ids are UUIDv7), a page at a time. The cursor
// is the last id returned, in hex, as the bbolt store's is.
func (s *Store) List(ctx context.Context, f jobs.Filter) ([]*jobs.Job, string, error) {
	if s.closed.Load() {
		return nil, "", jobs.ErrStoreClosed
	}
	if f.Limit <= 0 {
		f.Limit = 50
	}
	f.Limit = min(f.Limit, 1000)
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if f.Cursor != "" {
		b, err := hex.DecodeString(f.Cursor)
		if err != nil || len(b) != 16 {
			return nil, "", fmt.Errorf("%w: %q", jobs.ErrBadCursor, f.Cursor)
		}
		where = append(where, "id < "+arg(uuid.UUID(b).String())+"::uuid")
	}
	if f.Queue != "" {
		where = append(where, "queue = "+arg(f.Queue))
	}
	if f.Kind != "" {
		where = append(where, "kind = "+arg(f.Kind))
	}
	if f.State != "" {
		where = append(where, "state = "+arg(string(f.State)))
	}
	if !f.CreatedAfter.IsZero() {
		where = append(where, "created_at >= "+arg(f.CreatedAfter))
	}
	if !f.CreatedBefore.IsZero() {
		where = append(where, "created_at < "+arg(f.CreatedBefore))
	}
	q := `SELECT ` + jobColumns + ` FROM tandem_jobs`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY tandem_jobs.id DESC LIMIT ` + arg(f.Limit+1)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("postgres: list jobs: %w", err)
	}
	out, err := scanJobs(rows)
	if err != nil {
		return nil, "", fmt.Errorf("postgres: list jobs: %w", err)
	}
	next := ""
	if len(out) > f.Limit {
		out = out[:f.Limit]
		u := uuid.MustParse(out[len(out)-1].ID)
		next = hex.EncodeToString(u[:])
	}
	return out, next, nil
}

// Expired returns the ids of leased jobs whose lease ended before now, soonest first, whichever
// process leased them.
func (s *Store) Expired(ctx context.Context, now time.Time, limit int) ([]string, error) {
	if s.closed.Load() {
		return nil, jobs.ErrStoreClosed
	}
	rows, err := s.pool.Query(ctx, `SELECT id::text FROM tandem_jobs
		WHERE state IN ('prefetched', 'running') AND COALESCE(lease_until, run_at) < $1
		ORDER BY COALESCE(lease_until, run_at), tandem_jobs.id LIMIT $2`, now, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: expired leases: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: expired leases: %w", err)
	}
	return ids, nil
}

// Queues returns every queue that has or had jobs (tandem_queues keeps their names), or is
// paused, with its counts, from the database.
func (s *Store) Queues(ctx context.Context) ([]jobs.QueueStats, error) {
	if s.closed.Load() {
		return nil, jobs.ErrStoreClosed
	}
	byName := map[string]*jobs.QueueStats{}
	get := func(q string) *jobs.QueueStats {
		qs := byName[q]
		if qs == nil {
			qs = &jobs.QueueStats{Name: q, Counts: make(map[jobs.State]int, len(jobs.States))}
			for _, st := range jobs.States {
				qs.Counts[st] = 0
			}
			byName[q] = qs
		}
		return qs
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT name, paused FROM tandem_queues`).Query(func(rows pgx.Rows) error {
		var q string
		var p bool
		_, err := pgx.ForEachRow(rows, []any{&q, &p}, func() error { get(q).Paused = p; return nil })
		return err
	})
	b.Queue(`SELECT queue, state, count(*) FROM tandem_jobs GROUP BY 1, 2`).Query(func(rows pgx.Rows) error {
		var q, st string
		var n int
		_, err := pgx.ForEachRow(rows, []any{&q, &st, &n}, func() error { get(q).Counts[jobs.State(st)] = n; return nil })
		return err
	})
	b.Queue(`SELECT queue, min(run_at) FROM tandem_jobs WHERE state = 'ready' GROUP BY 1`).Query(func(rows pgx.Rows) error {
		var q string
		var at time.Time
		_, err := pgx.ForEachRow(rows, []any{&q, &at}, func() error { get(q).OldestReady = at.UTC(); return nil })
		return err
	})
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("postgres: queues: %w", err)
	}
	out := make([]jobs.QueueStats, 0, len(byName))
	for _, qs := range byName {
		out = append(out, *qs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
