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
-- Many jobs in one call to graphile's add_jobs; the specs travel as parallel arrays.
select j.id, j.revision, j.run_at, j.attempts, j.max_attempts, j.priority, j.key
from __SCHEMA__.add_jobs(
  (select array_agg(row(s.identifier, s.payload, s.queue_name, s.run_at, s.max_attempts, s.job_key,
                        s.priority,
                        (select array_agg(f) from json_array_elements_text(s.flags) f))::__SCHEMA__.job_spec
                    order by s.ord)
   from unnest(%(identifiers)s::text[], %(payloads)s::json[], %(queue_names)s::text[],
               %(run_ats)s::timestamptz[], %(max_attempts)s::smallint[], %(job_keys)s::text[],
               %(priorities)s::smallint[], %(flags)s::json[]) with ordinality
     as s(identifier, payload, queue_name, run_at, max_attempts, job_key, priority, flags, ord)),
  %(job_key_preserve_run_at)s::boolean
) j
-- name: analyze_jobs
-- Refresh planner statistics after a large bulk add, so the claim keeps using the partial indexes.
analyze __SCHEMA__._private_jobs
