-- Delete the worker's finished jobs in one statement and free their queues.
with done as (
  delete from __SCHEMA__._private_jobs j
  where j.id = any(%(job_ids)s::bigint[])
  returning j.job_queue_id
)
update __SCHEMA__._private_job_queues q
set locked_at = null, locked_by = null
where q.id in (select job_queue_id from done where job_queue_id is not null)
  and q.locked_by = %(worker_id)s
