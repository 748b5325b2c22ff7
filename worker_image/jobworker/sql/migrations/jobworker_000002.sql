--! breaking: jobworker 1's worker_heartbeat(text, jsonb), get_stale_workers, get_orphan_locks and
-- recover_worker_jobs are gone, so workers of older jobworker versions fail their heartbeat; drain them.
--
-- One workers table for every runtime: each runtime's sweep takes a lock holder missing from
-- _private_workers for an orphan, so a second table would let either recover the other's live jobs.
-- The table, its index and the shared functions take graphile_worker_rs's exact shape (its migrations
-- 20 and 21), whichever runtime creates them first:
-- - the table and index with IF NOT EXISTS; jobworker 1's table is altered into that shape (no default
--   heartbeat, nullable metadata, Rust's index name) and loses its row-level security, which a table
--   another runtime may own must not have;
-- - a shared function is created only when it is missing and never replaced, so graphile_worker_rs's
--   later versions (its migration 22 rewrites recover_dead_worker_jobs) survive a jobworker migrate;
-- - jobworker 1's own versions of the shared functions are dropped first (recognised by its
--   get_stale_workers): with the (text, jsonb) worker_heartbeat next to Rust's (text, json), an
--   untyped call is ambiguous;
-- - jobworker-only helpers carry jobworker_ names.
do $migration$
begin
if to_regprocedure('__SCHEMA__.get_stale_workers(interval)') is not null then
  drop function __SCHEMA__.get_stale_workers(interval);
  drop function if exists __SCHEMA__.worker_heartbeat(text, jsonb);
  drop function if exists __SCHEMA__.worker_deregister(text);
  drop function if exists __SCHEMA__.delete_stale_workers(text[]);
end if;
drop function if exists __SCHEMA__.get_orphan_locks(interval);
drop function if exists __SCHEMA__.recover_worker_jobs(text[], interval);

create table if not exists __SCHEMA__._private_workers (
    id text PRIMARY KEY,
    last_heartbeat_at timestamptz NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    metadata jsonb
);
alter table __SCHEMA__._private_workers
  alter column last_heartbeat_at drop default,
  alter column metadata drop not null,
  alter column metadata drop default,
  disable row level security;
if to_regclass('__SCHEMA__.workers_last_heartbeat_at_index') is not null then
  if to_regclass('__SCHEMA__._private_workers_last_heartbeat_at_idx') is null then
    alter index __SCHEMA__.workers_last_heartbeat_at_index rename to _private_workers_last_heartbeat_at_idx;
  else
    drop index __SCHEMA__.workers_last_heartbeat_at_index;
  end if;
end if;
create index if not exists _private_workers_last_heartbeat_at_idx
    on __SCHEMA__._private_workers (last_heartbeat_at);

if to_regprocedure('__SCHEMA__.worker_heartbeat(text, json)') is null then
CREATE FUNCTION __SCHEMA__.worker_heartbeat(
    worker_id text,
    metadata json DEFAULT NULL::json
) RETURNS void
LANGUAGE sql
AS $$
    INSERT INTO __SCHEMA__._private_workers AS workers (id, last_heartbeat_at, metadata)
    VALUES (worker_heartbeat.worker_id, now(), metadata::jsonb)
    ON CONFLICT (id) DO UPDATE
    SET
        last_heartbeat_at = now(),
        metadata = COALESCE(EXCLUDED.metadata, workers.metadata);
$$;
end if;

if to_regprocedure('__SCHEMA__.worker_deregister(text)') is null then
CREATE FUNCTION __SCHEMA__.worker_deregister(worker_id text) RETURNS void
LANGUAGE sql
AS $$
    DELETE FROM __SCHEMA__._private_workers
    WHERE id = worker_deregister.worker_id;
$$;
end if;

if to_regprocedure('__SCHEMA__.list_stale_workers(interval)') is null then
CREATE FUNCTION __SCHEMA__.list_stale_workers(
    stale_threshold interval
) RETURNS TABLE(worker_id text)
LANGUAGE sql
AS $$
    SELECT workers.id AS worker_id
    FROM __SCHEMA__._private_workers AS workers
    WHERE workers.last_heartbeat_at < now() - stale_threshold;
$$;
end if;

if to_regprocedure('__SCHEMA__.list_orphan_locked_workers(interval)') is null then
CREATE FUNCTION __SCHEMA__.list_orphan_locked_workers(
    stale_threshold interval
) RETURNS TABLE(worker_id text)
LANGUAGE sql
AS $$
    SELECT DISTINCT locks.locked_by AS worker_id
    FROM (
        SELECT jobs.locked_by, jobs.locked_at
        FROM __SCHEMA__._private_jobs AS jobs
        WHERE jobs.locked_by IS NOT NULL
        UNION ALL
        SELECT job_queues.locked_by, job_queues.locked_at
        FROM __SCHEMA__._private_job_queues AS job_queues
        WHERE job_queues.locked_by IS NOT NULL
    ) AS locks
    WHERE locks.locked_at < now() - stale_threshold
    AND NOT EXISTS (
        SELECT 1
        FROM __SCHEMA__._private_workers AS workers
        WHERE workers.id = locks.locked_by
    );
$$;
end if;

if to_regprocedure('__SCHEMA__.recover_dead_worker_jobs(text[], interval)') is null then
CREATE FUNCTION __SCHEMA__.recover_dead_worker_jobs(
    worker_ids text[],
    recovery_delay interval DEFAULT interval '0 seconds'
) RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    recovered_count integer := 0;
BEGIN
    WITH j AS (
        UPDATE __SCHEMA__._private_jobs AS jobs
        SET
            attempts = GREATEST(0, jobs.attempts - 1),
            locked_by = NULL,
            locked_at = NULL,
            run_at = GREATEST(jobs.run_at, now() + recovery_delay),
            last_error = 'Job recovered after worker interruption',
            updated_at = now()
        WHERE jobs.locked_by = ANY(worker_ids)
        RETURNING jobs.job_queue_id
    )
    SELECT COUNT(*) INTO recovered_count FROM j;

    UPDATE __SCHEMA__._private_job_queues AS job_queues
    SET locked_by = NULL, locked_at = NULL
    WHERE job_queues.locked_by = ANY(worker_ids);

    RETURN recovered_count;
END;
$$;
end if;

if to_regprocedure('__SCHEMA__.delete_stale_workers(text[])') is null then
CREATE FUNCTION __SCHEMA__.delete_stale_workers(
    worker_ids text[]
) RETURNS void
LANGUAGE sql
AS $$
    DELETE FROM __SCHEMA__._private_workers AS workers
    WHERE workers.id = ANY(worker_ids);
$$;
end if;

-- jobworker's sweep (worker_utils.sweep_stale_workers): it keeps the attempt a dead worker started and
-- says so in last_error, where graphile_worker_rs's recover_dead_worker_jobs gives the attempt back.
create or replace function __SCHEMA__.jobworker_recover_worker_jobs(worker_ids text[], recovery_delay interval default '0s')
returns setof bigint
language sql as $body$
  update __SCHEMA__._private_job_queues set locked_at = null, locked_by = null where locked_by = any(worker_ids);
  update __SCHEMA__._private_jobs
  set locked_at = null, locked_by = null, run_at = now() + recovery_delay, updated_at = now(),
      last_error = coalesce(last_error || E'\n', '') || 'Recovered: worker ' || locked_by || ' stopped heartbeating while running this job'
  where locked_by = any(worker_ids)
  returning id;
$body$;

-- Job locks held by a worker id that is not registered (Node workers, or a worker whose row a sweep
-- already removed), older than the threshold. Unlike list_orphan_locked_workers it ignores queue locks
-- and counts the jobs per holder.
create or replace function __SCHEMA__.jobworker_orphan_locks(threshold interval)
returns table (locked_by text, job_count bigint)
language sql stable as $body$
  select j.locked_by, count(*)
  from __SCHEMA__._private_jobs j
  where j.locked_by is not null and j.locked_at < now() - threshold
    and not exists (select 1 from __SCHEMA__._private_workers w where w.id = j.locked_by)
  group by j.locked_by;
$body$;
end
$migration$;
