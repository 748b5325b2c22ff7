-- name: record_signature
-- Record a signature's jti; a row back means this replica runs it, none means it ran before (a replay).
-- The primary key decides between replicas that race on one jti: the loser waits for the winner's commit,
-- then does nothing. The same statement prunes a bounded number of rows expired for over a minute (the
-- slack covers clock skew between the replicas, which check exp, and the database); skip locked keeps
-- replicas from queueing on each other's prune.
with pruned as (
  delete from __SCHEMA__._private_jobworker_seen_signatures
  where jti in (
    select jti from __SCHEMA__._private_jobworker_seen_signatures
    where expires_at < now() - interval '1 minute'
    order by expires_at
    limit %(prune)s
    for update skip locked
  )
)
insert into __SCHEMA__._private_jobworker_seen_signatures (jti, expires_at)
values (%(jti)s, to_timestamp(%(expires_at)s))
on conflict (jti) do nothing
returning jti
-- name: seen_signatures_ready
-- Whether the table exists (jobworker migration 3), checked when the endpoint starts.
select to_regclass(%(table)s) is not null as present
