-- name: add_job
-- One job through graphile's own SQL function, so Python and Node enqueue identically.
select (j).id, (j).revision, (j).run_at, (j).attempts, (j).max_attempts, (j).priority, (j).key
from (
  select __SCHEMA__.add_job(
    identifier => %(identifier)s::text,
    payload => %(payload)s::json,
    queue_name => %(queue_name)s::text,
    run_at => %(run_at)s::timestamptz,
    max_attempts => %(max_attempts)s::int,
    job_key => %(job_key)s::text,
    priority => %(priority)s::int,
    flags => %(flags)s::text[],
    job_key_mode => %(job_key_mode)s::text
  ) as j
) added
-- name: add_jobs
-- Many jobs in one call to graphile's add_jobs; the specs travel as one JSON array of job_spec-shaped
-- objects, turned into records in one pass, exactly as graphile-worker's addJobs sends them (rows come
-- back in spec order, as Node relies on too).
select j.id, j.revision, j.run_at, j.attempts, j.max_attempts, j.priority, j.key
from __SCHEMA__.add_jobs(
  array(select json_populate_recordset(null::__SCHEMA__.job_spec, %(specs)s::json)),
  %(job_key_preserve_run_at)s::boolean
) j
-- name: analyze_jobs
-- Refresh planner statistics after a large bulk add, so the claim keeps using the partial indexes.
analyze __SCHEMA__._private_jobs
