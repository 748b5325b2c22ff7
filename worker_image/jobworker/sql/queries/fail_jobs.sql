-- Record failures in one statement. Per job: the error, a replacement payload (the failed items of a
-- batch job), an explicit delay (RetryJob) instead of exp(least(attempts, 10)) seconds, and whether the
-- failure is permanent (attempts jump to max_attempts so the job is never claimed again).
with input as (
  select *
  from unnest(%(job_ids)s::bigint[], %(messages)s::text[], %(payloads)s::json[], %(delays)s::float8[],
              %(permanent)s::boolean[])
    as t(id, message, payload, delay_seconds, permanent)
),
failed as (
  update __SCHEMA__._private_jobs j
  set last_error = input.message,
      run_at = greatest(now(), j.run_at)
               + coalesce(input.delay_seconds, exp(least(j.attempts, 10))) * interval '1 second',
      attempts = case when input.permanent then j.max_attempts else j.attempts end,
      payload = coalesce(input.payload, j.payload),
      locked_at = null,
      locked_by = null,
      updated_at = now()
  from input
  where j.id = input.id and j.locked_by = %(worker_id)s
  returning j.id, j.job_queue_id
),
freed as (
  update __SCHEMA__._private_job_queues q
  set locked_at = null, locked_by = null
  where q.id in (select job_queue_id from failed where job_queue_id is not null)
    and q.locked_by = %(worker_id)s
)
select id from failed
