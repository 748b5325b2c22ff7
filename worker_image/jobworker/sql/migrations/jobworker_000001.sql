-- jobworker's own additions, recorded in jobworker_migrations (never in the shared migrations table,
-- whose ids belong to graphile-worker). Worker heartbeats, as graphile_worker_rs designs recovery.
-- Skipped where the table already exists (graphile_worker_rs created it first): migration 2 brings
-- either table to the one shape both runtimes share.
do $migration$
begin
if to_regclass('__SCHEMA__._private_workers') is null then
  create table __SCHEMA__._private_workers (
    id text primary key,
    last_heartbeat_at timestamptz not null default now(),
    started_at timestamptz not null default now(),
    metadata jsonb not null default '{}'::jsonb
  );
  create index workers_last_heartbeat_at_index on __SCHEMA__._private_workers (last_heartbeat_at);
  alter table __SCHEMA__._private_workers enable row level security;

  create function __SCHEMA__.worker_heartbeat(worker_id text, worker_metadata jsonb default '{}'::jsonb)
  returns void
  language sql as $body$
    insert into __SCHEMA__._private_workers (id, metadata) values (worker_id, coalesce(worker_metadata, '{}'::jsonb))
    on conflict (id) do update set last_heartbeat_at = now(),
      metadata = coalesce(excluded.metadata, __SCHEMA__._private_workers.metadata);
  $body$;

  create function __SCHEMA__.worker_deregister(worker_id text)
  returns void
  language sql as $body$
    delete from __SCHEMA__._private_workers where id = worker_id;
  $body$;

  create function __SCHEMA__.get_stale_workers(threshold interval)
  returns setof __SCHEMA__._private_workers
  language sql stable as $body$
    select * from __SCHEMA__._private_workers where last_heartbeat_at < now() - threshold order by last_heartbeat_at;
  $body$;

  -- Locks held by a worker id that never registered (or was deleted): Node workers, or a worker
  -- whose row a sweep already removed. Only locks older than the threshold count as orphans.
  create function __SCHEMA__.get_orphan_locks(threshold interval)
  returns table (locked_by text, job_count bigint)
  language sql stable as $body$
    select j.locked_by, count(*)
    from __SCHEMA__._private_jobs j
    where j.locked_by is not null and j.locked_at < now() - threshold
      and not exists (select 1 from __SCHEMA__._private_workers w where w.id = j.locked_by)
    group by j.locked_by;
  $body$;

  create function __SCHEMA__.recover_worker_jobs(worker_ids text[], recovery_delay interval default '0s')
  returns setof bigint
  language sql as $body$
    update __SCHEMA__._private_job_queues set locked_at = null, locked_by = null where locked_by = any(worker_ids);
    update __SCHEMA__._private_jobs
    set locked_at = null, locked_by = null, run_at = now() + recovery_delay, updated_at = now(),
        last_error = coalesce(last_error || E'\n', '') || 'Recovered: worker ' || locked_by || ' stopped heartbeating while running this job'
    where locked_by = any(worker_ids)
    returning id;
  $body$;

  create function __SCHEMA__.delete_stale_workers(worker_ids text[])
  returns void
  language sql as $body$
    delete from __SCHEMA__._private_workers where id = any(worker_ids);
  $body$;
end if;
end
$migration$;
