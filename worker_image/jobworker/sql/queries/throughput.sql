-- name: record_throughput
-- Add the job attempts this worker completed and failed since its last heartbeat to the current minute's
-- row (a minute is whole UTC seconds since the epoch, not date_trunc, which follows the session's time
-- zone), and prune rows older than two hours. Rows another worker is pruning are skipped, so two beats
-- never wait on each other.
with pruned as (
  delete from __SCHEMA__._private_jobworker_throughput t
  where (t.minute, t.worker_id) in (
    select o.minute, o.worker_id
    from __SCHEMA__._private_jobworker_throughput o
    where o.minute < now() - interval '2 hours'
    for update skip locked
  )
)
insert into __SCHEMA__._private_jobworker_throughput as t (minute, worker_id, completed, failed)
values (to_timestamp(floor(extract(epoch from now()) / 60) * 60), %(worker_id)s::text,
        %(completed)s::bigint, %(failed)s::bigint)
on conflict (minute, worker_id) do update
set completed = t.completed + excluded.completed, failed = t.failed + excluded.failed
