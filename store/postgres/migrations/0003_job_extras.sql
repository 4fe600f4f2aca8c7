-- A job's rarely-set fields: the handler's latest progress report, and the periodic schedule and
-- slot that made it. One jsonb column, NULL for most jobs, so that the multi-row writes every
-- commit makes carry one more NULL per job rather than several.
ALTER TABLE tandem_jobs ADD COLUMN extras jsonb;
