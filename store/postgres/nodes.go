package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-run/tandem/jobs"
)

// Renew extends the leases this Store instance holds (leased_by) on the given jobs to until, in
// one statement, and returns the ids it no longer holds: canceled, rescued (perhaps leased again by
// another process), finished or deleted.
func (s *Store) Renew(ctx context.Context, ids []string, until time.Time) (lost []string, err error) {
	if s.closed.Load() {
		return nil, jobs.ErrStoreClosed
	}
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `UPDATE tandem_jobs SET lease_until = $2
		WHERE id = ANY($1::uuid[]) AND leased_by = $3 AND state IN ('prefetched', 'running')
		RETURNING id::text`, validIDs(ids), usec(until), s.self)
	if err != nil {
		return nil, fmt.Errorf("postgres: renew leases: %w", err)
	}
	held, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: renew leases: %w", err)
	}
	for _, id := range ids {
		if !slices.Contains(held, id) {
			lost = append(lost, id)
		}
	}
	return lost, nil
}

// Heartbeat records the node and takes or keeps the leadership until now+ttl when it is free,
// expired, or already this node's: one statement each, sent together.
func (s *Store) Heartbeat(ctx context.Context, n jobs.Node, ttl time.Duration) (leader bool, err error) {
	if s.closed.Load() {
		return false, jobs.ErrStoreClosed
	}
	now := usec(s.opts.Now())
	pools, err := json.Marshal(n.Pools)
	if err != nil {
		return false, fmt.Errorf("postgres: heartbeat: %w", err)
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO tandem_nodes (name, version, started_at, heartbeat, running, pools)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version, started_at = EXCLUDED.started_at,
			heartbeat = EXCLUDED.heartbeat, running = EXCLUDED.running, pools = EXCLUDED.pools`,
		n.Name, n.Version, usec(n.StartedAt), now, n.Running, string(pools))
	b.Queue(`INSERT INTO tandem_leader (id, holder, expires_at) VALUES (1, $1, $2)
		ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
		WHERE tandem_leader.holder = EXCLUDED.holder OR tandem_leader.expires_at < $3
		RETURNING holder`, n.Name, now.Add(ttl), now).Query(func(rows pgx.Rows) error {
		leader = rows.Next()
		rows.Close()
		return rows.Err()
	})
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return false, fmt.Errorf("postgres: heartbeat: %w", err)
	}
	return leader, nil
}

// Nodes returns the nodes whose last heartbeat is not before since, by name, the leader marked.
func (s *Store) Nodes(ctx context.Context, since time.Time) ([]jobs.Node, error) {
	if s.closed.Load() {
		return nil, jobs.ErrStoreClosed
	}
	rows, err := s.pool.Query(ctx, `SELECT n.name, n.version, n.started_at, n.heartbeat, n.running, n.pools,
			COALESCE(l.holder = n.name AND l.expires_at >= $2, false)
		FROM tandem_nodes n LEFT JOIN tandem_leader l ON l.id = 1
		WHERE n.heartbeat >= $1 ORDER BY n.name`, usec(since), usec(s.opts.Now()))
	if err != nil {
		return nil, fmt.Errorf("postgres: nodes: %w", err)
	}
	var out []jobs.Node
	var n jobs.Node
	var pools []byte
	_, err = pgx.ForEachRow(rows, []any{&n.Name, &n.Version, &n.StartedAt, &n.Heartbeat, &n.Running, &pools, &n.Leader}, func() error {
		n.StartedAt, n.Heartbeat = n.StartedAt.UTC(), n.Heartbeat.UTC()
		n.Pools = nil
		if err := json.Unmarshal(pools, &n.Pools); err != nil {
			return fmt.Errorf("node %s: pools: %w", n.Name, err)
		}
		out = append(out, n)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: nodes: %w", err)
	}
	return out, nil
}

// Leave removes the node and gives up its leadership, so another node takes it at its next
// heartbeat.
func (s *Store) Leave(ctx context.Context, name string) error {
	if s.closed.Load() {
		return jobs.ErrStoreClosed
	}
	b := &pgx.Batch{}
	b.Queue(`DELETE FROM tandem_nodes WHERE name = $1`, name)
	b.Queue(`DELETE FROM tandem_leader WHERE holder = $1`, name)
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("postgres: leave: %w", err)
	}
	return nil
}

func validIDs(ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if isUUID(id) {
			out = append(out, id)
		}
	}
	return out
}
