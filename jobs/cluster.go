package jobs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// What a runtime does differently on a Shared store (several replicas on one database) is here:
// heartbeats that renew its leases and record it as a node, the maintenance leadership, the rescue
// of the jobs of replicas that died, and the store's health for readiness. On a store of its own
// (bbolt) the runtime is the only node and always leads.

// ErrTxUnsupported means the store cannot insert inside a caller's transaction (EnqueueTx): only
// the Postgres backend can.
var ErrTxUnsupported = errors.New("jobs: the store does not take a caller's transaction (EnqueueTx needs the postgres backend)")

// errLeaseLost cancels an attempt whose lease the store says this process no longer holds.
var errLeaseLost = errors.New("interrupted: the lease was lost (the job was canceled, rescued or deleted elsewhere)")

// maxAttemptedByKept bounds Job.AttemptedBy: the nodes of the most recent attempts.
const maxAttemptedByKept = 25

// DefaultNode is the node name a runtime uses when Options.Node is empty: hostname:pid, unique
// among live processes and readable in a pod list.
func DefaultNode() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "localhost"
	}
	return fmt.Sprintf("%s:%d", h, os.Getpid())
}

// heartbeatEvery is how often a runtime on a Shared store renews its leases and its node record;
// a lease lasts RescueAfter, so two heartbeats can be missed before another node rescues a job.
func (r *Runtime) heartbeatEvery() time.Duration {
	return max(r.opts.RescueAfter/3, 10*time.Millisecond)
}

// leaderTTL is how long a leadership lasts without a heartbeat: a dead leader is replaced within
// leaderTTL plus one heartbeat.
func (r *Runtime) leaderTTL() time.Duration { return 2*r.heartbeatEvery() + r.heartbeatEvery()/2 }

// Shared reports whether the store is shared by several processes (the Postgres backend).
func (r *Runtime) Shared() bool { return r.shared != nil }

// Node returns this runtime's node name (Options.Node).
func (r *Runtime) Node() string { return r.opts.Node }

// Leader reports whether this runtime runs the maintenance (always, on a store of its own).
func (r *Runtime) Leader() bool { return r.leader.Load() }

// Healthy returns nil while the store answers, and the last error otherwise: a Shared store is
// pinged every second, so a database that went away turns readiness off within about a second.
// A store of its own (a local file) reports nil: its failures are per write.
func (r *Runtime) Healthy() error {
	if p := r.storeErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Nodes lists the live processes using the store, sorted by name: on a Shared store every replica
// whose heartbeat is recent, on a store of its own this process alone.
func (r *Runtime) Nodes(ctx context.Context) ([]Node, error) {
	if r.shared == nil {
		n := r.self()
		n.Heartbeat, n.Leader = r.opts.Now().UTC(), true
		return []Node{n}, nil
	}
	return r.shared.Nodes(ctx, r.opts.Now().Add(-r.leaderTTL()-r.heartbeatEvery()))
}

// self describes this process for its heartbeat.
func (r *Runtime) self() Node {
	r.mu.Lock()
	running := 0
	for _, lj := range r.running {
		if lj.started {
			running++
		}
	}
	r.mu.Unlock()
	n := Node{Name: r.opts.Node, Version: r.opts.Version, StartedAt: r.startedAt, Running: running}
	if r.opts.NodePools != nil {
		n.Pools = r.opts.NodePools()
	} else {
		st := r.pool.Stats()
		n.Pools = map[string]NodePool{"jobs": {Size: st.Size, Running: st.Running}}
	}
	return n
}

// heartbeatLoop runs on a Shared store: it pings the store every second (readiness), and every
// heartbeatEvery renews the leases of the jobs leased here, records the node, takes or keeps the
// leadership, and, while it leads, rescues the jobs whose leases ran out.
func (r *Runtime) heartbeatLoop(ctx context.Context) {
	ping := time.NewTicker(time.Second)
	defer ping.Stop()
	beat := time.NewTimer(0) // at once: the node shows up and a leader is chosen at start
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ping.C:
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			r.setStoreErr(r.store.Ping(pctx))
			cancel()
		case <-beat.C:
			r.heartbeat(ctx)
			beat.Reset(r.heartbeatEvery())
		}
	}
}

func (r *Runtime) setStoreErr(err error) {
	if err == nil {
		if r.storeErr.Swap(nil) != nil {
			r.log.Info("job store reachable again")
		}
		return
	}
	r.storeFailedNow()
	if r.storeErr.Swap(&err) == nil {
		r.log.Error("job store unreachable; readiness is off until it answers", "err", err)
	}
}

// storeFailedNow notes that a ping, renew or heartbeat just failed (see heartbeat's rescue).
func (r *Runtime) storeFailedNow() { r.storeFailed.Store(r.opts.Now().UnixNano()) }

// heartbeat is one round of heartbeatLoop.
func (r *Runtime) heartbeat(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, r.heartbeatEvery())
	defer cancel()
	now := r.opts.Now()
	held := map[string]bool{} // leased here: running, or acknowledged and not yet on record
	r.mu.Lock()
	for id, lj := range r.running {
		if lj.leased {
			held[id] = true
		}
	}
	r.mu.Unlock()
	r.ackMu.Lock()
	for id := range r.acked {
		held[id] = true
	}
	r.ackMu.Unlock()
	ids := slices.Collect(maps.Keys(held))
	if len(ids) > 0 {
		lost, err := r.shared.Renew(ctx, ids, now.Add(r.opts.RescueAfter))
		if err != nil {
			r.storeFailedNow()
			r.log.Warn("renew leases", "jobs", len(ids), "err", err)
		}
		r.mu.Lock()
		for _, id := range lost {
			if lj := r.running[id]; lj != nil {
				lj.cancel(errLeaseLost)
			}
		}
		r.mu.Unlock()
	}
	leader, err := r.shared.Heartbeat(ctx, r.self(), r.leaderTTL())
	if err != nil {
		leader = false
		r.storeFailedNow()
		r.log.Warn("node heartbeat", "node", r.opts.Node, "err", err)
	}
	if was := r.leader.Swap(leader); was != leader {
		r.log.Info("maintenance leadership", "node", r.opts.Node, "leader", leader)
		if leader {
			r.signal(r.promote)
		}
	}
	// After this process could not reach the store, every replica's leases may have run out
	// meanwhile (the database was down for all of them): the live ones renew theirs within a
	// heartbeat of its return, so a leader rescues only once it has reached the store for a whole
	// lease length, and a replica that really died is rescued that much later.
	if leader && r.opts.Now().Sub(time.Unix(0, r.storeFailed.Load())) >= r.opts.RescueAfter {
		r.reclaimExpired(ctx, r.opts.Now())
	}
}

// leave gives up the node record and the leadership at a clean stop, so another node leads at once.
func (r *Runtime) leave() {
	if r.shared == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.shared.Leave(ctx, r.opts.Node); err != nil {
		r.log.Warn("leave", "node", r.opts.Node, "err", err)
	}
	r.leader.Store(false)
}

// appendNode records the node that runs an attempt.
func appendNode(nodes []string, node string) []string {
	nodes = append(nodes, node)
	if len(nodes) > maxAttemptedByKept {
		nodes = append([]string(nil), nodes[len(nodes)-maxAttemptedByKept:]...)
	}
	return nodes
}

// EnqueueTx validates jobs as EnqueueBatch does and inserts them inside tx, the caller's own
// Postgres transaction: they exist if and only if tx commits, so a job is never enqueued for data
// that was rolled back, nor lost for data that committed (River's transactional enqueue). Every
// replica's dispatcher is woken when tx commits. ErrTxUnsupported unless the store is the Postgres
// backend.
func (r *Runtime) EnqueueTx(ctx context.Context, tx pgx.Tx, ps ...EnqueueParams) ([]*Job, []bool, error) {
	ts, ok := r.store.(TxStore)
	if !ok {
		return nil, nil, ErrTxUnsupported
	}
	js, err := r.buildBatch(ps)
	if err != nil {
		return nil, nil, err
	}
	out, created, err := ts.InsertTx(ctx, tx, js, r.maxPending)
	if err != nil {
		return nil, nil, fmt.Errorf("enqueue in transaction: %w", err)
	}
	r.enqueued(out, created)
	return out, created, nil
}
