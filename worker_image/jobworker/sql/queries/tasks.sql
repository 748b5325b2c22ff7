-- name: register_tasks
-- Make sure every task identifier this worker knows has an id, and return them all.
with inserted as (
  insert into __SCHEMA__._private_tasks (identifier)
  select unnest(%(identifiers)s::text[])
  on conflict do nothing
  returning id, identifier
)
select id, identifier from inserted
union all
select id, identifier from __SCHEMA__._private_tasks where identifier = any(%(identifiers)s::text[])
