-- name: crontab_register
-- Record when each schedule was first seen; existing rows keep their known_since, which bounds backfill.
insert into __SCHEMA__._private_known_crontabs (identifier, known_since)
select unnest(%(identifiers)s::text[]), %(now)s::timestamptz
on conflict (identifier) do nothing
-- name: crontab_state
-- known_since and last_execution of the given schedules.
select identifier, known_since, last_execution
from __SCHEMA__._private_known_crontabs
where identifier = any(%(identifiers)s::text[])
-- name: crontab_fire
-- Claim one (schedule, tick) and enqueue its job in one statement, so one transaction. The conditional
-- upsert is the exactly-once guard: a replica that lost the race finds last_execution >= ts after the
-- winner commits, claims nothing, and so adds no job.
with claimed as (
  insert into __SCHEMA__._private_known_crontabs as k (identifier, known_since, last_execution)
  values (%(identifier)s::text, %(ts)s::timestamptz, %(ts)s::timestamptz)
  on conflict (identifier) do update set last_execution = excluded.last_execution
  where k.last_execution is null or k.last_execution < excluded.last_execution
  returning k.identifier
)
select (j).id, (j).revision
from (
  select __SCHEMA__.add_job(
    identifier => %(task)s::text,
    payload => %(payload)s::json,
    queue_name => %(queue_name)s::text,
    run_at => %(ts)s::timestamptz,
    max_attempts => %(max_attempts)s::int,
    job_key => %(job_key)s::text,
    priority => %(priority)s::int,
    job_key_mode => %(job_key_mode)s::text
  ) as j
  from claimed
) added
