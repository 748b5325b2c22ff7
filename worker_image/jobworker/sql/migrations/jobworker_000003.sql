-- The signatures (QStash token ids, `jti`) the job endpoint has run, shared by every `jobworker serve`
-- replica that sets JOBWORKER_REPLAY_DATABASE_URL: the primary key decides which replica runs a
-- signature, so a captured delivery replayed to another replica is refused. A row is needed only until
-- its signature expires; each insert prunes a few expired rows (replay_store.sql). Not breaking: only
-- the endpoint uses it.
create table if not exists __SCHEMA__._private_jobworker_seen_signatures (
  jti text primary key,
  expires_at timestamptz not null
);
create index if not exists _private_jobworker_seen_signatures_expires_at_idx
  on __SCHEMA__._private_jobworker_seen_signatures (expires_at);
