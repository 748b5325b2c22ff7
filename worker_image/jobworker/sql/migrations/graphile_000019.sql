-- Installs graphile-worker's schema as it stands after its migration 19 (graphile-worker 0.17),
-- and records migrations 1..19 so Node and Rust workers accept the schema as their own.
-- __SCHEMA__ is replaced by the quoted schema identifier before this runs.
create schema if not exists __SCHEMA__;

create table __SCHEMA__.migrations (
  id int primary key,
  ts timestamptz not null default now(),
  breaking boolean not null default false
);

create type __SCHEMA__.job_spec as (
  identifier text,
  payload json,
  queue_name text,
  run_at timestamptz,
  max_attempts smallint,
  job_key text,
  priority smallint,
  flags text[]
);

create table __SCHEMA__._private_tasks (
  id int primary key generated always as identity,
  identifier text not null unique check (length(identifier) <= 128)
);

create table __SCHEMA__._private_job_queues (
  id int primary key generated always as identity,
  queue_name text not null unique check (length(queue_name) <= 128),
  locked_at timestamptz,
  locked_by text,
  is_available boolean generated always as (locked_at is null) stored not null
);

create table __SCHEMA__._private_jobs (
  id bigint primary key generated always as identity,
  job_queue_id int,
  task_id int not null,
  payload json not null default '{}'::json,
  priority smallint not null default 0,
  run_at timestamptz not null default now(),
  attempts smallint not null default 0,
  max_attempts smallint not null default 25 constraint jobs_max_attempts_check check (max_attempts >= 1),
  last_error text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  key text unique constraint jobs_key_check check (length(key) > 0 and length(key) <= 512),
  locked_at timestamptz,
  locked_by text,
  revision int not null default 0,
  flags jsonb,
  is_available boolean generated always as (locked_at is null and attempts < max_attempts) stored not null
);

-- Two partial indexes serve the claim: one for all available jobs, one for jobs outside named queues.
create index jobs_main_index on __SCHEMA__._private_jobs (priority, run_at)
  include (id, task_id, job_queue_id) where is_available = true;
create index jobs_no_queue_index on __SCHEMA__._private_jobs (priority, run_at)
  include (id, task_id) where is_available = true and job_queue_id is null;

create table __SCHEMA__._private_known_crontabs (
  identifier text primary key,
  known_since timestamptz not null,
  last_execution timestamptz
);

alter table __SCHEMA__._private_jobs enable row level security;
alter table __SCHEMA__._private_tasks enable row level security;
alter table __SCHEMA__._private_job_queues enable row level security;
alter table __SCHEMA__._private_known_crontabs enable row level security;

create view __SCHEMA__.jobs as
  select j.id, q.queue_name, t.identifier as task_identifier, j.priority, j.run_at, j.attempts,
         j.max_attempts, j.last_error, j.created_at, j.updated_at, j.key, j.locked_at, j.locked_by,
         j.revision, j.flags
  from __SCHEMA__._private_jobs j
  join __SCHEMA__._private_tasks t on t.id = j.task_id
  left join __SCHEMA__._private_job_queues q on q.id = j.job_queue_id;

create function __SCHEMA__.add_jobs(specs __SCHEMA__.job_spec[], job_key_preserve_run_at boolean default false)
returns setof __SCHEMA__._private_jobs
language plpgsql as $body$
begin
  insert into __SCHEMA__._private_tasks (identifier)
    select distinct s.identifier from unnest(specs) s
    on conflict do nothing;
  insert into __SCHEMA__._private_job_queues (queue_name)
    select distinct s.queue_name from unnest(specs) s where s.queue_name is not null
    on conflict do nothing;
  -- A running (or failed) job with the same key keeps running; it loses its key and its retries,
  -- and a fresh job takes the key, because the caller has news the running one has not seen.
  update __SCHEMA__._private_jobs j
    set key = null, attempts = j.max_attempts, updated_at = now()
    from unnest(specs) s
    where s.job_key is not null and j.key = s.job_key and j.is_available is not true;
  perform pg_notify('jobs:insert', json_build_object('r', random(), 'count', coalesce(array_length(specs, 1), 0))::text);
  return query
    insert into __SCHEMA__._private_jobs as j
      (job_queue_id, task_id, payload, run_at, max_attempts, key, priority, flags)
    select q.id, t.id, coalesce(s.payload, '{}'::json), coalesce(s.run_at, now()),
           coalesce(s.max_attempts, 25), s.job_key, coalesce(s.priority, 0),
           (select jsonb_object_agg(f, true) from unnest(s.flags) f)
    from unnest(specs) with ordinality s
    join __SCHEMA__._private_tasks t on t.identifier = s.identifier
    left join __SCHEMA__._private_job_queues q on q.queue_name = s.queue_name
    order by s.ordinality  -- ids and returned rows follow the order of the specs
    on conflict (key) do update set
      job_queue_id = excluded.job_queue_id,
      task_id = excluded.task_id,
      payload = case
        when json_typeof(j.payload) = 'array' and json_typeof(excluded.payload) = 'array'
          then (j.payload::jsonb || excluded.payload::jsonb)::json
        else excluded.payload
      end,
      max_attempts = excluded.max_attempts,
      run_at = case when job_key_preserve_run_at is true and j.attempts = 0 then j.run_at else excluded.run_at end,
      priority = excluded.priority,
      revision = j.revision + 1,
      flags = excluded.flags,
      attempts = 0,
      last_error = null,
      updated_at = now()
    where j.locked_at is null
    returning *;
end;
$body$;

create function __SCHEMA__.add_job(
  identifier text,
  payload json default null,
  queue_name text default null,
  run_at timestamptz default null,
  max_attempts int default null,
  job_key text default null,
  priority int default null,
  flags text[] default null,
  job_key_mode text default 'replace'
) returns __SCHEMA__._private_jobs
language plpgsql as $body$
declare
  v_job __SCHEMA__._private_jobs;
begin
  if job_key is null or job_key_mode is null or job_key_mode in ('replace', 'preserve_run_at') then
    select * into v_job from __SCHEMA__.add_jobs(
      array[(identifier, payload, queue_name, run_at, max_attempts::smallint, job_key,
             priority::smallint, flags)::__SCHEMA__.job_spec],
      job_key_mode = 'preserve_run_at'
    ) limit 1;
    return v_job;
  elsif job_key_mode = 'unsafe_dedupe' then
    insert into __SCHEMA__._private_tasks (identifier) values (add_job.identifier) on conflict do nothing;
    if add_job.queue_name is not null then
      insert into __SCHEMA__._private_job_queues (queue_name) values (add_job.queue_name) on conflict do nothing;
    end if;
    insert into __SCHEMA__._private_jobs as j (job_queue_id, task_id, payload, run_at, max_attempts, key, priority, flags)
      select q.id, t.id, coalesce(add_job.payload, '{}'::json), coalesce(add_job.run_at, now()),
             coalesce(add_job.max_attempts::smallint, 25::smallint), add_job.job_key,
             coalesce(add_job.priority::smallint, 0::smallint),
             (select jsonb_object_agg(f, true) from unnest(add_job.flags) f)
      from __SCHEMA__._private_tasks t
      left join __SCHEMA__._private_job_queues q on q.queue_name = add_job.queue_name
      where t.identifier = add_job.identifier
    on conflict (key) do update set revision = j.revision + 1, updated_at = now()
    returning * into v_job;
    if v_job.revision = 0 then
      perform pg_notify('jobs:insert', json_build_object('r', random(), 'count', 1)::text);
    end if;
    return v_job;
  else
    raise exception 'Invalid job_key_mode value, expected ''replace'', ''preserve_run_at'' or ''unsafe_dedupe''.'
      using errcode = 'GWBKM';
  end if;
end;
$body$;

create function __SCHEMA__.complete_jobs(job_ids bigint[])
returns setof __SCHEMA__._private_jobs
language sql as $body$
  delete from __SCHEMA__._private_jobs
  where id = any(job_ids) and (locked_at is null or locked_at < now() - interval '4 hours')
  returning *;
$body$;

create function __SCHEMA__.permanently_fail_jobs(job_ids bigint[], error_message text default null)
returns setof __SCHEMA__._private_jobs
language sql as $body$
  update __SCHEMA__._private_jobs
  set last_error = coalesce(error_message, 'Manually marked as failed'), attempts = max_attempts, updated_at = now()
  where id = any(job_ids) and (locked_at is null or locked_at < now() - interval '4 hours')
  returning *;
$body$;

create function __SCHEMA__.reschedule_jobs(
  job_ids bigint[],
  run_at timestamptz default null,
  priority int default null,
  attempts int default null,
  max_attempts int default null
) returns setof __SCHEMA__._private_jobs
language sql as $body$
  update __SCHEMA__._private_jobs j set
    run_at = coalesce(reschedule_jobs.run_at, j.run_at),
    priority = coalesce(reschedule_jobs.priority::smallint, j.priority),
    attempts = coalesce(reschedule_jobs.attempts::smallint, j.attempts),
    max_attempts = coalesce(reschedule_jobs.max_attempts::smallint, j.max_attempts),
    updated_at = now()
  where j.id = any(job_ids) and (j.locked_at is null or j.locked_at < now() - interval '4 hours')
  returning *;
$body$;

create function __SCHEMA__.remove_job(job_key text)
returns __SCHEMA__._private_jobs
language plpgsql strict as $body$
declare
  v_job __SCHEMA__._private_jobs;
begin
  delete from __SCHEMA__._private_jobs
  where key = job_key and (locked_at is null or locked_at < now() - interval '4 hours')
  returning * into v_job;
  if not (v_job is null) then
    perform pg_notify('jobs:insert', json_build_object('r', random(), 'count', -1)::text);
    return v_job;
  end if;
  -- A running job cannot be deleted under its worker: stop its retries and free the key instead.
  update __SCHEMA__._private_jobs
  set key = null, attempts = max_attempts, updated_at = now()
  where key = job_key
  returning * into v_job;
  return v_job;
end;
$body$;

create function __SCHEMA__.force_unlock_workers(worker_ids text[])
returns void
language sql as $body$
  update __SCHEMA__._private_jobs set locked_at = null, locked_by = null where locked_by = any(worker_ids);
  update __SCHEMA__._private_job_queues set locked_at = null, locked_by = null where locked_by = any(worker_ids);
$body$;

insert into __SCHEMA__.migrations (id, ts, breaking)
  select i, now(), i in (1, 3, 11, 13, 14, 16, 19) from generate_series(1, 19) i;
