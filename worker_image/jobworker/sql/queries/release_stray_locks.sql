-- Give back every job this worker has locked but is not running, holding locally or still writing a
-- result for (%(held)s): a claim whose reply was lost after it committed, or a result the database
-- refused. The attempt the claim counted is refunded, as for return_jobs; queue locks of ours that no job
-- of ours still holds are freed too. Run only when such a lock may exist, since it scans locked_by.
with released as (
  update __SCHEMA__._private_jobs j
  set attempts = greatest(j.attempts - 1, 0), locked_at = null, locked_by = null, updated_at = now()
  where j.locked_by = %(worker_id)s and j.id <> all(%(held)s::bigint[])
  returning j.id, j.job_queue_id
),
freed as (
  update __SCHEMA__._private_job_queues q
  set locked_at = null, locked_by = null
  where q.locked_by = %(worker_id)s
    and not exists (
      select 1 from __SCHEMA__._private_jobs j
      where j.job_queue_id = q.id and j.locked_by = %(worker_id)s and j.id = any(%(held)s::bigint[])
    )
)
select id from released
