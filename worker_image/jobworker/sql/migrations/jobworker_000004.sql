-- Completed and failed job attempts per minute and per jobworker worker, for the dashboard's throughput
-- chart. Each worker adds what it finished since its last heartbeat, with that heartbeat (one statement
-- per beat, nothing per job: throughput.sql), so the last hour outlives a dashboard restart and covers
-- every jobworker worker. graphile-worker in Node or Rust does not write it. Rows older than two hours are
-- pruned by the workers' own writes. Not breaking: only jobworker reads or writes it.
create table if not exists __SCHEMA__._private_jobworker_throughput (
  minute timestamptz not null,
  worker_id text not null,
  completed bigint not null default 0,
  failed bigint not null default 0,
  primary key (minute, worker_id)
);
