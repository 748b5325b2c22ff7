-- name: gc_task_identifiers
-- Delete task identifiers no job uses, keeping those that live workers (or the caller) know. A live
-- worker that does not say which tasks it knows (graphile_worker_rs registers with no metadata, yet
-- caches its task ids) keeps every identifier: deleting one would strand that worker's later jobs.
delete from __SCHEMA__._private_tasks t
where not exists (select 1 from __SCHEMA__._private_jobs j where j.task_id = t.id)
  and t.identifier <> all(%(keep)s::text[])
  and not exists (
    select 1 from __SCHEMA__._private_workers w
    where w.last_heartbeat_at >= now() - interval '5 minutes'
      and (w.metadata -> 'tasks' ? t.identifier or jsonb_typeof(w.metadata -> 'tasks') is distinct from 'array')
  )
returning t.identifier
-- name: gc_job_queues
-- Delete unlocked queues no job uses.
delete from __SCHEMA__._private_job_queues q
where q.locked_at is null
  and not exists (select 1 from __SCHEMA__._private_jobs j where j.job_queue_id = q.id)
returning q.queue_name
-- name: delete_permanently_failed_jobs
-- Delete jobs that used all their attempts and are not running.
delete from __SCHEMA__._private_jobs j
where j.attempts >= j.max_attempts and j.locked_at is null
returning j.id
