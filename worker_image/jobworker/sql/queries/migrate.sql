-- name: migrate_lock
-- jobworker migrators of one schema run one at a time: a transaction-scoped advisory lock per schema.
select pg_advisory_xact_lock(hashtext('jobworker.migrate:' || %(schema)s::text))
-- name: graphile_migrations_present
-- Whether graphile-worker's migrations table exists in the schema (no schema: nothing installed yet).
select to_regclass(quote_ident(%(schema)s::text) || '.migrations') is not null as present
-- name: graphile_migrations
-- Every graphile-worker migration recorded in the shared table, oldest first.
select id, breaking from __SCHEMA__.migrations order by id
-- name: graphile_latest_migration
-- The highest migration id in the shared table, whoever applied it (the operator's status.schemaVersion).
select max(id) as id from __SCHEMA__.migrations
-- name: claim_graphile_migration
-- Claim a graphile-worker migration id before applying it, as graphile-worker's migrators do: a concurrent
-- Node or Rust migrator that took it (committed or not) makes this wait, then return nothing.
insert into __SCHEMA__.migrations (id, breaking) values (%(id)s, false)
on conflict (id) do nothing
returning id
-- name: create_jobworker_migrations
-- jobworker's own migrations table, kept apart so the two numberings never clash.
create table if not exists __SCHEMA__.jobworker_migrations
(id int primary key, ts timestamptz not null default now(), breaking boolean not null default false)
-- name: jobworker_migrations_present
-- Whether jobworker's own migrations table exists in the schema.
select to_regclass(quote_ident(%(schema)s::text) || '.jobworker_migrations') is not null as present
-- name: jobworker_version
-- The newest jobworker migration applied (0: none).
select coalesce(max(id), 0) as version from __SCHEMA__.jobworker_migrations
-- name: newer_breaking_jobworker_migrations
-- Breaking jobworker migrations newer than the given version (applied by a newer jobworker).
select id from __SCHEMA__.jobworker_migrations where id > %(version)s and breaking
-- name: active_jobworker_workers
-- jobworker's own live workers only: a drain stops those, never the Node or Rust ones sharing the table.
select count(*) as count from __SCHEMA__._private_workers
where last_heartbeat_at > now() - interval '1 minute' and metadata ->> 'runtime' = 'jobworker'
-- name: notify_migration
-- graphile-worker's signal, sent in the transaction that applies a migration (delivered at commit):
-- graphile-worker's workers exit with code 57 on a breaking one, and so do jobworker's. `family` says
-- which numbering migrationNumber is in (graphile's shared table, or jobworker_migrations); Node ignores it.
select pg_notify('worker:migrate', json_build_object(
  'migrationNumber', %(id)s::int, 'breaking', %(breaking)s::boolean, 'family', %(family)s::text
)::text)
-- name: record_jobworker_migration
-- Record an applied jobworker migration and whether it was breaking.
insert into __SCHEMA__.jobworker_migrations (id, breaking) values (%(id)s, %(breaking)s)
