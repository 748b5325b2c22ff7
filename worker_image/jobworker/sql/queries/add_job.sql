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
-- objects, turned into records in one pass, exactly as graphile-worker's addJobs sends them. The
-- shared add_jobs (graphile-worker 0.18's, or graphile_worker_rs's) returns rows in join order, so
-- each row is matched back to its spec, by job key, else by every stored field, and the rows come
-- back in spec order; a keyed spec whose job is running gets no row. Task ids and queues that add_jobs
-- creates are not visible to this statement, so those compare as null on both sides: specs that
-- differ only in a task or queue new in this batch may swap their rows.
with spec as (
  select s.*,
         case when s.job_key is not null then jsonb_build_array(s.job_key)
         else jsonb_build_array(
           (select t.id from __SCHEMA__._private_tasks t where t.identifier = s.identifier),
           (select q.id from __SCHEMA__._private_job_queues q where q.queue_name = s.queue_name),
           coalesce(s.payload, '{}'::json)::text, coalesce(s.run_at, now()), coalesce(s.max_attempts, 25),
           coalesce(s.priority, 0), (select jsonb_object_agg(f, true) from unnest(s.flags) f))
         end as fingerprint
  from json_populate_recordset(null::__SCHEMA__.job_spec, %(specs)s::json) with ordinality s
), added as (
  select j.*,
         case when j.key is not null then jsonb_build_array(j.key)
         else jsonb_build_array(
           (select t.id from __SCHEMA__._private_tasks t where t.id = j.task_id),
           (select q.id from __SCHEMA__._private_job_queues q where q.id = j.job_queue_id),
           j.payload::text, j.run_at, j.max_attempts, j.priority, j.flags)
         end as fingerprint
  from __SCHEMA__.add_jobs(
    array(
      select (s.identifier, s.payload, s.queue_name, s.run_at, s.max_attempts, s.job_key, s.priority,
              s.flags)::__SCHEMA__.job_spec
      from spec s order by s.ordinality
    ),
    %(job_key_preserve_run_at)s::boolean
  ) j
)
select a.id, a.revision, a.run_at, a.attempts, a.max_attempts, a.priority, a.key
from (select spec.*, row_number() over (partition by fingerprint order by ordinality) as nth from spec) s
join (select added.*, row_number() over (partition by fingerprint order by id) as nth from added) a
  on a.fingerprint = s.fingerprint and a.nth = s.nth
order by s.ordinality
-- name: analyze_jobs
-- Refresh planner statistics after a large bulk add, so the claim keeps using the partial indexes.
analyze __SCHEMA__._private_jobs
