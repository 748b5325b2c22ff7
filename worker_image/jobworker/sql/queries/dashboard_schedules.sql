-- name: dashboard_schedules
-- The scheduler's table: each schedule id it has seen, since when, and the last tick it fired.
select identifier, known_since, last_execution
from __SCHEMA__._private_known_crontabs
order by identifier
