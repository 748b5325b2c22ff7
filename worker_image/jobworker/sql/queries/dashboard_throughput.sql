-- name: dashboard_deleted_total
-- Rows ever deleted from the jobs table, from the statistics collector: a completed job is deleted, so the
-- dashboard's sampler turns the per-minute difference into completions (admin deletes count too).
select coalesce(n_tup_del, 0)::bigint as deleted
from pg_stat_all_tables
where relid = to_regclass('__SCHEMA__._private_jobs')
-- name: dashboard_failures_per_minute
-- Jobs whose latest failure fell in each minute of the last hour (a failure sets last_error and
-- updated_at and unlocks the job); a job that failed twice in the hour counts at its latest failure.
select date_trunc('minute', j.updated_at) as minute, count(*) as count
from __SCHEMA__._private_jobs j
where j.updated_at >= now() - interval '1 hour'
  and j.last_error is not null and j.attempts > 0 and j.locked_at is null
group by 1
order by 1
