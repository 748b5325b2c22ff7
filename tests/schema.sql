SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET transaction_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;
CREATE SCHEMA graphile_worker;
CREATE TYPE graphile_worker.job_spec AS (
	identifier text,
	payload json,
	queue_name text,
	run_at timestamp with time zone,
	max_attempts smallint,
	job_key text,
	priority smallint,
	flags text[]
);
SET default_tablespace = '';
SET default_table_access_method = heap;
CREATE TABLE graphile_worker._private_jobs (
    id bigint NOT NULL,
    job_queue_id integer,
    task_id integer NOT NULL,
    payload json DEFAULT '{}'::json NOT NULL,
    priority smallint DEFAULT 0 NOT NULL,
    run_at timestamp with time zone DEFAULT now() NOT NULL,
    attempts smallint DEFAULT 0 NOT NULL,
    max_attempts smallint DEFAULT 25 NOT NULL,
    last_error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    key text,
    locked_at timestamp with time zone,
    locked_by text,
    revision integer DEFAULT 0 NOT NULL,
    flags jsonb,
    is_available boolean GENERATED ALWAYS AS (((locked_at IS NULL) AND (attempts < max_attempts))) STORED NOT NULL,
    CONSTRAINT jobs_key_check CHECK (((length(key) > 0) AND (length(key) <= 512))),
    CONSTRAINT jobs_max_attempts_check CHECK ((max_attempts >= 1))
);
CREATE FUNCTION graphile_worker.add_job(identifier text, payload json DEFAULT NULL::json, queue_name text DEFAULT NULL::text, run_at timestamp with time zone DEFAULT NULL::timestamp with time zone, max_attempts integer DEFAULT NULL::integer, job_key text DEFAULT NULL::text, priority integer DEFAULT NULL::integer, flags text[] DEFAULT NULL::text[], job_key_mode text DEFAULT 'replace'::text) RETURNS graphile_worker._private_jobs
    LANGUAGE plpgsql
    AS $$
declare
  v_job "graphile_worker"._private_jobs;
begin
  if job_key is null or job_key_mode is null or job_key_mode in ('replace', 'preserve_run_at') then
    select * into v_job from "graphile_worker".add_jobs(
      array[(identifier, payload, queue_name, run_at, max_attempts::smallint, job_key,
             priority::smallint, flags)::"graphile_worker".job_spec],
      job_key_mode = 'preserve_run_at'
    ) limit 1;
    return v_job;
  elsif job_key_mode = 'unsafe_dedupe' then
    insert into "graphile_worker"._private_tasks (identifier) values (add_job.identifier) on conflict do nothing;
    if add_job.queue_name is not null then
      insert into "graphile_worker"._private_job_queues (queue_name) values (add_job.queue_name) on conflict do nothing;
    end if;
    insert into "graphile_worker"._private_jobs as j (job_queue_id, task_id, payload, run_at, max_attempts, key, priority, flags)
      select q.id, t.id, coalesce(add_job.payload, '{}'::json), coalesce(add_job.run_at, now()),
             coalesce(add_job.max_attempts::smallint, 25::smallint), add_job.job_key,
             coalesce(add_job.priority::smallint, 0::smallint),
             (select jsonb_object_agg(f, true) from unnest(add_job.flags) f)
      from "graphile_worker"._private_tasks t
      left join "graphile_worker"._private_job_queues q on q.queue_name = add_job.queue_name
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
$$;
CREATE FUNCTION graphile_worker.add_jobs(specs graphile_worker.job_spec[], job_key_preserve_run_at boolean DEFAULT false) RETURNS SETOF graphile_worker._private_jobs
    LANGUAGE plpgsql
    AS $$
begin
  insert into "graphile_worker"._private_tasks (identifier)
    select distinct s.identifier from unnest(specs) s
    on conflict do nothing;
  insert into "graphile_worker"._private_job_queues (queue_name)
    select distinct s.queue_name from unnest(specs) s where s.queue_name is not null
    on conflict do nothing;
  -- A running (or failed) job with the same key keeps running; it loses its key and its retries,
  -- and a fresh job takes the key, because the caller has news the running one has not seen.
  update "graphile_worker"._private_jobs j
    set key = null, attempts = j.max_attempts, updated_at = now()
    from unnest(specs) s
    where s.job_key is not null and j.key = s.job_key and j.is_available is not true;
  perform pg_notify('jobs:insert', json_build_object('r', random(), 'count', coalesce(array_length(specs, 1), 0))::text);
  return query
    insert into "graphile_worker"._private_jobs as j
      (job_queue_id, task_id, payload, run_at, max_attempts, key, priority, flags)
    select q.id, t.id, coalesce(s.payload, '{}'::json), coalesce(s.run_at, now()),
           coalesce(s.max_attempts, 25), s.job_key, coalesce(s.priority, 0),
           (select jsonb_object_agg(f, true) from unnest(s.flags) f)
    from unnest(specs) with ordinality s
    join "graphile_worker"._private_tasks t on t.identifier = s.identifier
    left join "graphile_worker"._private_job_queues q on q.queue_name = s.queue_name
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
$$;
CREATE FUNCTION graphile_worker.complete_jobs(job_ids bigint[]) RETURNS SETOF graphile_worker._private_jobs
    LANGUAGE sql
    AS $$
  delete from "graphile_worker"._private_jobs
  where id = any(job_ids) and (locked_at is null or locked_at < now() - interval '4 hours')
  returning *;
$$;
CREATE FUNCTION graphile_worker.delete_stale_workers(worker_ids text[]) RETURNS void
    LANGUAGE sql
    AS $$
  delete from "graphile_worker"._private_workers where id = any(worker_ids);
$$;
CREATE FUNCTION graphile_worker.force_unlock_workers(worker_ids text[]) RETURNS void
    LANGUAGE sql
    AS $$
  update "graphile_worker"._private_jobs set locked_at = null, locked_by = null where locked_by = any(worker_ids);
  update "graphile_worker"._private_job_queues set locked_at = null, locked_by = null where locked_by = any(worker_ids);
$$;
CREATE FUNCTION graphile_worker.get_orphan_locks(threshold interval) RETURNS TABLE(locked_by text, job_count bigint)
    LANGUAGE sql STABLE
    AS $$
  select j.locked_by, count(*)
  from "graphile_worker"._private_jobs j
  where j.locked_by is not null and j.locked_at < now() - threshold
    and not exists (select 1 from "graphile_worker"._private_workers w where w.id = j.locked_by)
  group by j.locked_by;
$$;
CREATE TABLE graphile_worker._private_workers (
    id text NOT NULL,
    last_heartbeat_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    metadata jsonb DEFAULT '{}'::jsonb NOT NULL
);
CREATE FUNCTION graphile_worker.get_stale_workers(threshold interval) RETURNS SETOF graphile_worker._private_workers
    LANGUAGE sql STABLE
    AS $$
  select * from "graphile_worker"._private_workers where last_heartbeat_at < now() - threshold order by last_heartbeat_at;
$$;
CREATE FUNCTION graphile_worker.permanently_fail_jobs(job_ids bigint[], error_message text DEFAULT NULL::text) RETURNS SETOF graphile_worker._private_jobs
    LANGUAGE sql
    AS $$
  update "graphile_worker"._private_jobs
  set last_error = coalesce(error_message, 'Manually marked as failed'), attempts = max_attempts, updated_at = now()
  where id = any(job_ids) and (locked_at is null or locked_at < now() - interval '4 hours')
  returning *;
$$;
CREATE FUNCTION graphile_worker.recover_worker_jobs(worker_ids text[], recovery_delay interval DEFAULT '00:00:00'::interval) RETURNS SETOF bigint
    LANGUAGE sql
    AS $$
  update "graphile_worker"._private_job_queues set locked_at = null, locked_by = null where locked_by = any(worker_ids);
  update "graphile_worker"._private_jobs
  set locked_at = null, locked_by = null, run_at = now() + recovery_delay, updated_at = now(),
      last_error = coalesce(last_error || E'\n', '') || 'Recovered: worker ' || locked_by || ' stopped heartbeating while running this job'
  where locked_by = any(worker_ids)
  returning id;
$$;
CREATE FUNCTION graphile_worker.remove_job(job_key text) RETURNS graphile_worker._private_jobs
    LANGUAGE plpgsql STRICT
    AS $$
declare
  v_job "graphile_worker"._private_jobs;
begin
  delete from "graphile_worker"._private_jobs
  where key = job_key and (locked_at is null or locked_at < now() - interval '4 hours')
  returning * into v_job;
  if not (v_job is null) then
    perform pg_notify('jobs:insert', json_build_object('r', random(), 'count', -1)::text);
    return v_job;
  end if;
  -- A running job cannot be deleted under its worker: stop its retries and free the key instead.
  update "graphile_worker"._private_jobs
  set key = null, attempts = max_attempts, updated_at = now()
  where key = job_key
  returning * into v_job;
  return v_job;
end;
$$;
CREATE FUNCTION graphile_worker.reschedule_jobs(job_ids bigint[], run_at timestamp with time zone DEFAULT NULL::timestamp with time zone, priority integer DEFAULT NULL::integer, attempts integer DEFAULT NULL::integer, max_attempts integer DEFAULT NULL::integer) RETURNS SETOF graphile_worker._private_jobs
    LANGUAGE sql
    AS $$
  update "graphile_worker"._private_jobs j set
    run_at = coalesce(reschedule_jobs.run_at, j.run_at),
    priority = coalesce(reschedule_jobs.priority::smallint, j.priority),
    attempts = coalesce(reschedule_jobs.attempts::smallint, j.attempts),
    max_attempts = coalesce(reschedule_jobs.max_attempts::smallint, j.max_attempts),
    updated_at = now()
  where j.id = any(job_ids) and (j.locked_at is null or j.locked_at < now() - interval '4 hours')
  returning *;
$$;
CREATE FUNCTION graphile_worker.worker_deregister(worker_id text) RETURNS void
    LANGUAGE sql
    AS $$
  delete from "graphile_worker"._private_workers where id = worker_id;
$$;
CREATE FUNCTION graphile_worker.worker_heartbeat(worker_id text, worker_metadata jsonb DEFAULT '{}'::jsonb) RETURNS void
    LANGUAGE sql
    AS $$
  insert into "graphile_worker"._private_workers (id, metadata) values (worker_id, coalesce(worker_metadata, '{}'::jsonb))
  on conflict (id) do update set last_heartbeat_at = now(),
    metadata = coalesce(excluded.metadata, "graphile_worker"._private_workers.metadata);
$$;
CREATE TABLE graphile_worker._private_job_queues (
    id integer NOT NULL,
    queue_name text NOT NULL,
    locked_at timestamp with time zone,
    locked_by text,
    is_available boolean GENERATED ALWAYS AS ((locked_at IS NULL)) STORED NOT NULL,
    CONSTRAINT _private_job_queues_queue_name_check CHECK ((length(queue_name) <= 128))
);
ALTER TABLE graphile_worker._private_job_queues ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME graphile_worker._private_job_queues_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
ALTER TABLE graphile_worker._private_jobs ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME graphile_worker._private_jobs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE graphile_worker._private_known_crontabs (
    identifier text NOT NULL,
    known_since timestamp with time zone NOT NULL,
    last_execution timestamp with time zone
);
CREATE TABLE graphile_worker._private_tasks (
    id integer NOT NULL,
    identifier text NOT NULL,
    CONSTRAINT _private_tasks_identifier_check CHECK ((length(identifier) <= 128))
);
ALTER TABLE graphile_worker._private_tasks ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME graphile_worker._private_tasks_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE VIEW graphile_worker.jobs AS
 SELECT j.id,
    q.queue_name,
    t.identifier AS task_identifier,
    j.priority,
    j.run_at,
    j.attempts,
    j.max_attempts,
    j.last_error,
    j.created_at,
    j.updated_at,
    j.key,
    j.locked_at,
    j.locked_by,
    j.revision,
    j.flags
   FROM ((graphile_worker._private_jobs j
     JOIN graphile_worker._private_tasks t ON ((t.id = j.task_id)))
     LEFT JOIN graphile_worker._private_job_queues q ON ((q.id = j.job_queue_id)));
CREATE TABLE graphile_worker.jobworker_migrations (
    id integer NOT NULL,
    ts timestamp with time zone DEFAULT now() NOT NULL,
    breaking boolean DEFAULT false NOT NULL
);
CREATE TABLE graphile_worker.migrations (
    id integer NOT NULL,
    ts timestamp with time zone DEFAULT now() NOT NULL,
    breaking boolean DEFAULT false NOT NULL
);
ALTER TABLE ONLY graphile_worker._private_job_queues
    ADD CONSTRAINT _private_job_queues_pkey PRIMARY KEY (id);
ALTER TABLE ONLY graphile_worker._private_job_queues
    ADD CONSTRAINT _private_job_queues_queue_name_key UNIQUE (queue_name);
ALTER TABLE ONLY graphile_worker._private_jobs
    ADD CONSTRAINT _private_jobs_key_key UNIQUE (key);
ALTER TABLE ONLY graphile_worker._private_jobs
    ADD CONSTRAINT _private_jobs_pkey PRIMARY KEY (id);
ALTER TABLE ONLY graphile_worker._private_known_crontabs
    ADD CONSTRAINT _private_known_crontabs_pkey PRIMARY KEY (identifier);
ALTER TABLE ONLY graphile_worker._private_tasks
    ADD CONSTRAINT _private_tasks_identifier_key UNIQUE (identifier);
ALTER TABLE ONLY graphile_worker._private_tasks
    ADD CONSTRAINT _private_tasks_pkey PRIMARY KEY (id);
ALTER TABLE ONLY graphile_worker._private_workers
    ADD CONSTRAINT _private_workers_pkey PRIMARY KEY (id);
ALTER TABLE ONLY graphile_worker.jobworker_migrations
    ADD CONSTRAINT jobworker_migrations_pkey PRIMARY KEY (id);
ALTER TABLE ONLY graphile_worker.migrations
    ADD CONSTRAINT migrations_pkey PRIMARY KEY (id);
CREATE INDEX jobs_main_index ON graphile_worker._private_jobs USING btree (priority, run_at) INCLUDE (id, task_id, job_queue_id) WHERE (is_available = true);
CREATE INDEX jobs_no_queue_index ON graphile_worker._private_jobs USING btree (priority, run_at) INCLUDE (id, task_id) WHERE ((is_available = true) AND (job_queue_id IS NULL));
CREATE INDEX workers_last_heartbeat_at_index ON graphile_worker._private_workers USING btree (last_heartbeat_at);
ALTER TABLE graphile_worker._private_job_queues ENABLE ROW LEVEL SECURITY;
ALTER TABLE graphile_worker._private_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE graphile_worker._private_known_crontabs ENABLE ROW LEVEL SECURITY;
ALTER TABLE graphile_worker._private_tasks ENABLE ROW LEVEL SECURITY;
ALTER TABLE graphile_worker._private_workers ENABLE ROW LEVEL SECURITY;
