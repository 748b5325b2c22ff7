-- name: lock_holders
-- The workers holding jobs (locked_by), for the autoscaler: how many jobs each holds and how long ago it
-- locked its newest and its oldest one, the youngest newest lock first, at most %(limit)s rows; every row
-- also carries the number of all holders. No worker id leaves the query, so the reading stays bounded.
with holders as (
  select j.locked_by, count(*) as jobs,
         extract(epoch from now() - max(j.locked_at)) as newest_lock_seconds,
         extract(epoch from now() - min(j.locked_at)) as oldest_lock_seconds
  from __SCHEMA__._private_jobs j
  where j.locked_by is not null and j.locked_at is not null
  group by j.locked_by
)
select jobs, newest_lock_seconds, oldest_lock_seconds, count(*) over () as holders
from holders
order by newest_lock_seconds, locked_by
limit %(limit)s
