-- name: dashboard_throughput
-- Completed and failed job attempts per minute over the last hour, summed over every jobworker worker
-- (each adds its own with its heartbeat: throughput.sql). Node and Rust workers do not record here.
select t.minute, sum(t.completed)::bigint as completed, sum(t.failed)::bigint as failed,
       count(distinct t.worker_id)::int as workers
from __SCHEMA__._private_jobworker_throughput t
where t.minute >= now() - interval '61 minutes'
group by t.minute
order by t.minute
