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
-- objects, turned into records in one pass, exactly as graphile-worker's addJobs sends them. The rows
-- come back in spec order. The shared add_jobs (graphile-worker 0.18's, or graphile_worker_rs's) returns
-- them in its join's order, which is usually the specs' own: that is checked row by row (the first
-- branch), and only when it fails is each row matched back to its spec, by job key, else by every stored
-- field (the second branch). A keyed spec whose job is running gets no row. Task and queue ids that
-- add_jobs creates are not visible to this statement, so they compare as null: in the matching branch,
-- specs that differ only in a task or queue new in this batch may swap their rows.
with spec as (
  select s.*, t.id as task_id, q.id as job_queue_id
  from json_populate_recordset(null::__SCHEMA__.job_spec, %(specs)s::json) with ordinality s
  left join __SCHEMA__._private_tasks t on t.identifier = s.identifier
  left join __SCHEMA__._private_job_queues q on q.queue_name = s.queue_name
), added as (
  select j.*, t.id as known_task_id, q.id as known_queue_id
  from __SCHEMA__.add_jobs(
    array(
      select (s.identifier, s.payload, s.queue_name, s.run_at, s.max_attempts, s.job_key, s.priority,
              s.flags)::__SCHEMA__.job_spec
      from spec s order by s.ordinality
    ),
    %(job_key_preserve_run_at)s::boolean
  ) with ordinality j
  left join __SCHEMA__._private_tasks t on t.id = j.task_id
  left join __SCHEMA__._private_job_queues q on q.id = j.job_queue_id
), in_order as (
  select count(*) = (select count(*) from spec) and coalesce(bool_and(
           case when s.job_key is not null then a.key is not distinct from s.job_key
           else a.key is null and a.known_task_id is not distinct from s.task_id
             and a.known_queue_id is not distinct from s.job_queue_id
             and a.payload::text = coalesce(s.payload, '{}'::json)::text
             and a.run_at = coalesce(s.run_at, now()) and a.priority = coalesce(s.priority, 0)
             and a.max_attempts = coalesce(s.max_attempts, 25)
           end), true) as yes
  from added a join spec s on s.ordinality = a.ordinality
)
select a.id, a.revision, a.run_at, a.attempts, a.max_attempts, a.priority, a.key
from added a where (select yes from in_order)
union all
(
select a.id, a.revision, a.run_at, a.attempts, a.max_attempts, a.priority, a.key
from (select spec.ordinality, row_number() over (partition by fingerprint order by ordinality) as nth, fingerprint
      from (select spec.*, case when job_key is not null then 'k' || job_key
            else concat_ws(chr(31), task_id, job_queue_id, coalesce(payload, '{}'::json)::text,
                           coalesce(run_at, now()), coalesce(max_attempts, 25), coalesce(priority, 0),
                           (select jsonb_object_agg(f, true) from unnest(flags) f)) end as fingerprint
            from spec) spec) s
join (select added.*, row_number() over (partition by fingerprint order by id) as nth
      from (select added.*, case when key is not null then 'k' || key
            else concat_ws(chr(31), known_task_id, known_queue_id, payload::text, run_at, max_attempts, priority,
                           flags) end as fingerprint
            from added) added) a
  on a.fingerprint = s.fingerprint and a.nth = s.nth
where not (select yes from in_order)
order by s.ordinality
)
-- name: analyze_jobs
-- Refresh planner statistics after a large bulk add, so the claim keeps using the partial indexes.
analyze __SCHEMA__._private_jobs
