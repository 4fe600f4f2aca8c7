package jobs

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Shared is what a Store adds when several processes use it at once (package store/postgres), as
// River's and asynq's replicas share one queue: any process may lease any job. The runtime sees a
// Store that implements Shared and then
//
//   - leases for RescueAfter and renews the leases of the jobs it runs every RescueAfter/3 (a
//     heartbeat), so a long job that is alive is never taken from it;
//   - records itself as a Node at each heartbeat, and runs the maintenance (promoting delayed jobs,
//     rescuing the jobs of processes whose leases ran out, retention sweeps) only while it holds
//     the leadership, which one node at a time does;
//   - wakes its dispatcher on Changes, so an idle process leases jobs another one enqueued.
//
// Recover hands no job to a process that starts: its predecessor's leases run out and the leader
// rescues them (Expired), since the store cannot tell a dead process's jobs from a live one's.
type Shared interface {
	Store

	// Renew extends to until the leases of these jobs, which this process leased. It returns the
	// ids whose lease this process no longer holds (the job was canceled, rescued or deleted), so
	// their attempts can be stopped.
	Renew(ctx context.Context, ids []string, until time.Time) (lost []string, err error)

	// Heartbeat records the node as alive (Node.Heartbeat is set by the store), and takes or keeps
	// the maintenance leadership until now+ttl when no other live node holds it. It reports
	// whether this node leads.
	Heartbeat(ctx context.Context, n Node, ttl time.Duration) (leader bool, err error)

	// Nodes returns the nodes whose last heartbeat is not before since, sorted by name, with the
	// leader marked.
	Nodes(ctx context.Context, since time.Time) ([]Node, error)

	// Leave removes the node and gives up its leadership (a clean stop), so another node takes
	// over at once.
	Leave(ctx context.Context, name string) error

	// Changes receives when another process may have made jobs ready (an enqueue, a retry, a
	// promotion) or resumed a queue. Sends never block and coalesce; a fallback poll inside the
	// store covers notifications lost while its connection was down.
	Changes() <-chan struct{}
}

// TxStore is a Store that can insert jobs inside the caller's own Postgres transaction
// (Runtime.EnqueueTx): the jobs exist if and only if that transaction commits.
type TxStore interface {
	// InsertTx is Insert inside tx. It writes nothing outside tx, and other processes see the jobs
	// (and are woken for them) once tx commits.
	InsertTx(ctx context.Context, tx pgx.Tx, jobs []*Job, maxPending func(queue string) int) (out []*Job, created []bool, err error)
}

// Node is one process using the store: a replica.
type Node struct {
	Name      string // Options.Node: hostname:pid by default
	Version   string
	StartedAt time.Time
	Heartbeat time.Time           // its last heartbeat, as the store recorded it
	Leader    bool                // it holds the maintenance leadership
	Running   int                 // jobs its workers run
	Pools     map[string]NodePool // its pools by name ("http", "jobs")
}

// NodePool is the size and use of one of a node's pools.
type NodePool struct {
	Size    int
	Running int
}
