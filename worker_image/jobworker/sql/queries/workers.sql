-- name: heartbeat
-- Register or refresh this worker; metadata carries its task identifiers so cleanup keeps them.
-- The shared function, with graphile_worker_rs's signature (text, json).
select __SCHEMA__.worker_heartbeat(%(worker_id)s::text, %(metadata)s::json)
-- name: deregister
-- Remove this worker's row on a clean exit.
select __SCHEMA__.worker_deregister(%(worker_id)s::text)
-- name: list_workers
-- Registered workers with their heartbeat age and the number of jobs each has locked.
select w.id, w.started_at, w.last_heartbeat_at, w.metadata,
       extract(epoch from now() - w.last_heartbeat_at) as heartbeat_age_seconds,
       (select count(*) from __SCHEMA__._private_jobs j where j.locked_by = w.id) as locked_jobs
from __SCHEMA__._private_workers w
order by w.started_at
-- name: count_workers
-- Live and stale workers by a threshold in seconds.
select count(*) filter (where last_heartbeat_at >= now() - %(threshold)s * interval '1 second') as active,
       count(*) filter (where last_heartbeat_at < now() - %(threshold)s * interval '1 second') as stale
from __SCHEMA__._private_workers
-- name: try_sweep_lock
-- One sweeper at a time across all replicas: a transaction-scoped advisory lock per schema.
select pg_try_advisory_xact_lock(hashtext('jobworker.sweep:' || %(schema)s::text)) as taken
-- name: stale_workers
-- Workers whose heartbeat is older than the threshold, with the heartbeat interval each recorded (if any).
select id, extract(epoch from now() - last_heartbeat_at) as heartbeat_age_seconds,
       case when jsonb_typeof(metadata -> 'heartbeat_interval') = 'number'
            then (metadata ->> 'heartbeat_interval')::float8 end as heartbeat_interval
from __SCHEMA__._private_workers
where id in (select worker_id from __SCHEMA__.list_stale_workers(%(threshold)s * interval '1 second'))
order by last_heartbeat_at
-- name: orphan_locks
-- Lock holders with no registered worker whose locks are older than the threshold.
select locked_by, job_count from __SCHEMA__.jobworker_orphan_locks(%(threshold)s * interval '1 second')
-- name: recover_worker_jobs
-- Unlock the jobs and queues of dead workers; the jobs run again after the recovery delay, with the
-- attempt the dead worker started still counted (graphile_worker_rs's recover_dead_worker_jobs refunds it).
select id from __SCHEMA__.jobworker_recover_worker_jobs(%(worker_ids)s::text[], %(recovery_delay)s * interval '1 second') as r(id)
-- name: delete_stale_workers
-- Forget dead workers once their jobs are recovered.
select __SCHEMA__.delete_stale_workers(%(worker_ids)s::text[])
