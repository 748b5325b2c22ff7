-- name: complete_jobs
-- Delete the worker's finished jobs in one statement and free their queues. Fenced: only jobs still
-- locked by this worker are deleted. A job the stale-worker sweep took back (and another worker may now
-- run, or add_job(job_key) rewrote in place) is left alone; the caller counts the ids not returned.
with done as (
  delete from __SCHEMA__._private_jobs j
  where j.id = any(%(job_ids)s::bigint[]) and j.locked_by = %(worker_id)s
  returning j.id, j.job_queue_id
),
freed as (
  update __SCHEMA__._private_job_queues q
  set locked_at = null, locked_by = null
  where q.id in (select job_queue_id from done where job_queue_id is not null)
    and q.locked_by = %(worker_id)s
)
select id from done

-- name: jobs_present
-- Which of these jobs still exist. After a completion whose reply was lost is sent again and matches
-- nothing, a job that is gone was completed (by the lost attempt, most likely), not taken from us.
select j.id from __SCHEMA__._private_jobs j where j.id = any(%(job_ids)s::bigint[])
