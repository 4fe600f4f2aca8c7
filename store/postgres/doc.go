// Package postgres is tandem's job store on a Postgres database (pgx/v5) that several tandem
// processes share, as River's replicas share theirs: it implements jobs.Store, jobs.Shared and
// jobs.TxStore. The bbolt store (package store) is the reference for every method's semantics.
//
// # Commits
//
// Writes go through one committer goroutine, as in the bbolt store: the requests sent while a
// transaction is being made share the next one, in order. The records a batch's requests name
// are read in one SELECT ... FOR UPDATE, requests change copies in memory (checks first, so a
// request that fails writes nothing), and the changes are written at the end with one multi-row
// INSERT, UPDATE and DELETE (unnest), then NOTIFY, then COMMIT. A database error fails every
// request of its batch. Leases (UPDATE ... FOR UPDATE SKIP LOCKED), unique inserts, promotions and
// sweeps run their statement inside the batch's transaction.
//
// # Across processes
//
// Unique keys (a partial unique index over live jobs), pause, per-queue concurrency caps (an
// advisory lock per queue around capped leases) and max_pending (exact near the limit, under an
// advisory lock) hold across every process. A commit that made jobs ready sends
// pg_notify('tandem_jobs', 'N:queue') with how many, a resume the queue's name alone; each Store
// listens on its own connection and wakes the runtime (Changes). Ready and Paused answer from an
// in-memory estimate, refreshed by the store's own commits, by notifications and by a recount
// every PollInterval.
//
// # Caveats
//
//   - Times are stored to the microsecond (timestamptz): the store truncates the times of every
//     record it writes, in UTC, and returns the truncated record.
//   - Ids are stored as uuid: a caller's id is rewritten in canonical (lower-case) form.
//   - Renew and Heartbeat compare times that processes wrote with their own clocks: keep them in
//     step (NTP). The leadership's ttl must exceed the worst clock skew.
//   - A max_pending above 10,000, with the queue below half of it, trusts the estimate, which can
//     miss what other processes inserted during the last PollInterval.
//   - Moving a finished job with a unique key back to a live state while another live job holds
//     the key violates the unique index: the batch that carries it fails.
package postgres
