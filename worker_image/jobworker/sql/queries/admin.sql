-- name: complete_jobs_admin
-- Mark jobs complete by id (deletes them); locked jobs are left alone.
select id from __SCHEMA__.complete_jobs(%(job_ids)s::bigint[])
-- name: permanently_fail_jobs
-- Fail jobs for good with a reason; locked jobs are left alone.
select id from __SCHEMA__.permanently_fail_jobs(%(job_ids)s::bigint[], %(reason)s::text)
-- name: reschedule_jobs
-- Move jobs to a new run_at (and optionally priority/attempts/max_attempts); locked jobs are left alone.
select id from __SCHEMA__.reschedule_jobs(%(job_ids)s::bigint[], %(run_at)s::timestamptz, %(priority)s::int,
                                          %(attempts)s::int, %(max_attempts)s::int)
-- name: remove_job
-- Delete the job with this key, or, if it is running, clear its key and stop its retries.
select (j).id, (j).locked_at from (select __SCHEMA__.remove_job(%(job_key)s::text) as j) r where (j).id is not null
-- name: remove_unlocked_job
-- Delete the job with this key only if no worker holds it, check and delete in one statement: a job being
-- claimed at that moment holds its row lock, the delete waits for the claim to commit, re-reads the row
-- and leaves it alone (the dashboard never touches a running job).
delete from __SCHEMA__._private_jobs j
where j.key = %(job_key)s::text and j.locked_at is null
returning j.id, j.locked_at
-- name: force_unlock_workers
-- Release every job and queue lock held by these worker ids.
select __SCHEMA__.force_unlock_workers(%(worker_ids)s::text[])
