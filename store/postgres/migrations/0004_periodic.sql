-- The periodic schedules' marks: each schedule's last slot fired and its job. A fire locks its
-- schedule's row and writes it with the job in one transaction, so every replica may run the
-- scheduler and a slot still makes one job.
CREATE TABLE tandem_periodic (
    name      text PRIMARY KEY,
    last_slot timestamptz NOT NULL,
    last_job  uuid NOT NULL
);
