-- tandem's job store on Postgres: jobs, queues (paused flags, and every queue that had jobs),
-- nodes (replicas) and the maintenance leadership.

CREATE TABLE tandem_jobs (
    id           uuid        PRIMARY KEY, -- UUIDv7: sorts by creation
    kind         text        NOT NULL,
    queue        text        NOT NULL,
    state        text        NOT NULL,
    priority     smallint    NOT NULL,
    run_at       timestamptz NOT NULL,
    attempt      integer     NOT NULL,
    max_attempts integer     NOT NULL,
    timeout_ns   bigint      NOT NULL,
    payload      bytea,                   -- the JSON as sent, byte for byte (jsonb would reorder it)
    result       bytea,
    errors       jsonb,                   -- [{attempt, at, error}], oldest first
    attempted_by jsonb,                   -- ["node", ...], oldest first
    unique_key   text,                    -- NULL when none
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    started_at   timestamptz,
    finished_at  timestamptz,
    lease_until  timestamptz,
    leased_by    text                     -- the Store instance holding the lease (Renew)
);

-- Leasing: the best ready jobs of a queue.
CREATE INDEX tandem_jobs_ready ON tandem_jobs (queue, priority DESC, run_at, id) WHERE state = 'ready';
-- Promote: scheduled and retrying jobs by due time.
CREATE INDEX tandem_jobs_due ON tandem_jobs (run_at) WHERE state IN ('scheduled', 'retrying');
-- Expired: leases by end.
CREATE INDEX tandem_jobs_lease ON tandem_jobs ((COALESCE(lease_until, run_at))) WHERE state IN ('prefetched', 'running');
-- Sweep: finished jobs by end.
CREATE INDEX tandem_jobs_finished ON tandem_jobs ((COALESCE(finished_at, updated_at))) WHERE state IN ('succeeded', 'dead', 'canceled');
-- Unique keys hold among live jobs only.
CREATE UNIQUE INDEX tandem_jobs_unique ON tandem_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state NOT IN ('succeeded', 'dead', 'canceled');
-- Counts per queue and state (max_pending, caps, Queues).
CREATE INDEX tandem_jobs_queue_state ON tandem_jobs (queue, state);

CREATE TABLE tandem_queues (
    name   text    PRIMARY KEY,
    paused boolean NOT NULL DEFAULT false
);

CREATE TABLE tandem_nodes (
    name       text        PRIMARY KEY,
    version    text        NOT NULL,
    started_at timestamptz NOT NULL,
    heartbeat  timestamptz NOT NULL,
    running    integer     NOT NULL,
    pools      jsonb       NOT NULL
);

-- One row: who holds the maintenance leadership, until when.
CREATE TABLE tandem_leader (
    id         integer     PRIMARY KEY CHECK (id = 1),
    holder     text        NOT NULL,
    expires_at timestamptz NOT NULL
);
