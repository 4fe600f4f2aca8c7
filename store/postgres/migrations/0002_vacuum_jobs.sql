-- A queue table churns: every job is inserted and updated three or four times, and each update
-- leaves a dead tuple whose entry stays in the ready index until a vacuum. A lease scans that
-- index from its head, so the dead entries of the jobs leased before it pile up in front of the
-- live ones and every lease gets slower until autovacuum comes by: a 20,000-job run drained at
-- half the speed when it did not. Postgres's defaults wait for 20% of the table to change and
-- throttle the vacuum; this table is vacuumed after a fixed number of changes, unthrottled.
-- The server's autovacuum_naptime (60s by default) still bounds how often it is looked at: a
-- busy queue wants it lower (docs/postgres.md).
ALTER TABLE tandem_jobs SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);
