"""Two ``jobworker serve`` replicas sharing one PostgreSQL replay table (JOBWORKER_REPLAY_DATABASE_URL).

The stand-in QStash, driven by the real ``qstash`` SDK, delivers to replica A at the one public URL both
replicas serve; a captured delivery is then replayed to replica B. Each handler run appends a line to one
calls file both processes share, so "ran exactly once" is read across the replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from aiohttp import web
from qstash import AsyncQStash

from jobworker.config import QStashConfig
from jobworker.endpoint import asgi_app, create_app
from jobworker.replay import PostgresSeenTokens, ReplayStoreUnavailableError
from tests import endpoint_jobs
from tests.integration.runtime import eventually, fetch
from tests.pg import PgServer
from tests.qstash_standin import QStashStandIn, running_standin, serving, signature
from tests.serve_process import CURRENT, NEXT, REPO, Served, free_port, serve
from tests.tcp_proxy import TcpProxy

TABLE = "graphile_worker._private_jobworker_seen_signatures"


@dataclass
class Replicas:
    a: Served
    b: Served
    standin: QStashStandIn
    calls_file: Path

    @property
    def public(self) -> str:
        """The destination QStash calls (replica A's address) and every signature names."""
        return self.a.url("record")

    def sign(self, body: bytes) -> str:
        return signature(self.standin.current_key, self.public, body)

    def texts(self) -> list[str]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line)["text"] for line in self.calls_file.read_text().splitlines()]

    async def post(self, replica: Served, body: bytes, headers: dict[str, str]) -> httpx.Response:
        async with httpx.AsyncClient() as client:
            return await client.post(replica.url("record"), content=body, headers=headers, timeout=60)


def replica_env(standin: QStashStandIn, replay_url: str, calls_file: Path, **extra: str) -> dict[str, str]:
    return {
        "QSTASH_CURRENT_SIGNING_KEY": standin.current_key,
        "QSTASH_NEXT_SIGNING_KEY": standin.next_key,
        "JOBWORKER_REPLAY_DATABASE_URL": replay_url,
        "ENDPOINT_TEST_CALLS": str(calls_file),
        **extra,
    }


@contextlib.asynccontextmanager
async def replicas(replay_url: str, tmp_path: Path, **extra: str) -> AsyncIterator[Replicas]:
    """Replicas A and B; B's QSTASH_CALLBACK_URL is A's address, as behind one load balancer."""
    calls_file = tmp_path / "calls.jsonl"
    async with running_standin() as standin:
        env = replica_env(standin, replay_url, calls_file, **extra)
        with contextlib.ExitStack() as stack:
            # Started in a thread: serve() polls /healthz with blocking sleeps, and a TcpProxy in this
            # event loop must keep forwarding the replicas' start-up check meanwhile.
            a = await asyncio.to_thread(stack.enter_context, serve(env=env))
            b = await asyncio.to_thread(stack.enter_context, serve(env={**env, "QSTASH_CALLBACK_URL": a.base}))
            yield Replicas(a, b, standin, calls_file)


async def test_a_delivery_captured_at_one_replica_and_replayed_to_the_other_does_not_run(
    db_url: str, tmp_path: Path
) -> None:
    async with replicas(db_url, tmp_path) as r:
        client = AsyncQStash(r.standin.token, base_url=r.standin.url)
        sent = await client.message.publish_json(url=r.public, body={"text": "captured"}, retries=0)
        message = await r.standin.settled(sent.message_id)  # type: ignore[union-attr]
        assert message.state == "delivered", message.attempts
        captured = message.attempts[0].request_headers
        # The replay changes what the signature does not cover, and goes to the replica that did not run it.
        forged = {**captured, "Upstash-Message-Id": "msg_forged", "Jobworker-Max-Attempts": "99"}
        for replica in (r.b, r.a):
            replay = await r.post(replica, message.body, forged)
            assert replay.status_code == 409, replay.text
            assert replay.json()["error"]["code"] == "jobs.replayed"
        assert r.texts() == ["captured"]
        assert await fetch(db_url, f"select count(*) as n from {TABLE}") == [{"n": 1}]  # type: ignore[arg-type]


async def test_the_same_signature_sent_to_both_replicas_at_once_runs_once(db_url: str, tmp_path: Path) -> None:
    async with replicas(db_url, tmp_path) as r:
        bodies = [json.dumps({"text": f"race-{i}"}).encode() for i in range(12)]

        async def race(body: bytes) -> list[int]:
            headers = {"Upstash-Signature": r.sign(body), "Upstash-Message-Id": "msg_race"}
            replies = await asyncio.gather(r.post(r.a, body, headers), r.post(r.b, body, headers))
            return sorted(reply.status_code for reply in replies)

        outcomes = await asyncio.gather(*(race(body) for body in bodies))
        assert outcomes == [[200, 409]] * len(bodies)
        assert sorted(r.texts()) == sorted(f"race-{i}" for i in range(12))


async def test_expired_signatures_are_pruned_a_few_per_delivery(db_url: str, tmp_path: Path) -> None:
    await fetch(
        db_url,
        f"insert into {TABLE} (jti, expires_at) "  # type: ignore[arg-type]
        "select 'old_' || i, now() - interval '1 hour' from generate_series(1, 25) i",
    )
    # Expired, but within the minute of slack left for clock skew: kept.
    await fetch(db_url, f"insert into {TABLE} values ('recent', now() - interval '5 seconds')")  # type: ignore[arg-type]

    async def old_rows() -> int:
        rows = await fetch(db_url, f"select count(*) as n from {TABLE} where jti like 'old_%%'")  # type: ignore[arg-type]
        return int(rows[0]["n"])

    async with replicas(db_url, tmp_path) as r:
        remaining = []
        for i in range(3):
            body = json.dumps({"text": f"prune-{i}"}).encode()
            reply = await r.post(r.a if i % 2 == 0 else r.b, body, {"Upstash-Signature": r.sign(body)})
            assert reply.status_code == 200, reply.text
            remaining.append(await old_rows())
        assert remaining == [15, 5, 0], "each delivery removes at most 10 expired rows"
        rows = await fetch(db_url, f"select jti from {TABLE} order by jti")  # type: ignore[arg-type]
        assert len(rows) == 4 and "recent" in [row["jti"] for row in rows]


def database_connections(pg: PgServer, url: str, *, allow: bool) -> None:
    """Let the replicas' database take connections, or refuse them and end the open ones (as a restart does)."""
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        conn.execute(f'alter database "{name}" allow_connections {str(allow).lower()}')  # type: ignore[arg-type]
        if not allow:
            conn.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", [name])


async def test_database_down_answers_503_and_the_retry_after_recovery_runs_once(
    pg: PgServer, db_url: str, tmp_path: Path
) -> None:
    async with replicas(db_url, tmp_path) as r:
        warm = json.dumps({"text": "warm"}).encode()  # the replicas hold pooled connections when it goes down
        assert (await r.post(r.a, warm, {"Upstash-Signature": r.sign(warm)})).status_code == 200
        database_connections(pg, db_url, allow=False)
        try:
            # Straight to each replica: 503 with Retry-After, and the handler did not run.
            for replica in (r.a, r.b):
                body = json.dumps({"text": "while-down"}).encode()
                reply = await r.post(replica, body, {"Upstash-Signature": r.sign(body)})
                assert reply.status_code == 503, reply.text
                assert reply.json()["error"]["code"] == "jobs.replay_store_unavailable"
                assert int(reply.headers["Retry-After"]) >= 1
            client = AsyncQStash(r.standin.token, base_url=r.standin.url)
            sent = await client.message.publish_json(url=r.public, body={"text": "delivered-later"}, retries=20)
            message = r.standin.messages[sent.message_id]  # type: ignore[union-attr]

            async def statuses() -> list[int]:
                return [a.status for a in message.attempts]

            await eventually(statuses, lambda s: 503 in s, within=30, what="a 503 while the database is down")
            assert message.attempts[0].headers.get("Retry-After") == "30"
        finally:
            database_connections(pg, db_url, allow=True)
        settled = await r.standin.settled(message.id, within=60)
        assert settled.state == "delivered", settled.attempts
        codes = [a.status for a in settled.attempts]
        assert codes[-1] == 200 and set(codes[:-1]) == {503}, codes
        assert r.texts() == ["warm", "delivered-later"]


async def test_a_frozen_database_answers_503_within_the_replay_timeout(db_url: str, tmp_path: Path) -> None:
    proxy = await TcpProxy.to_database(db_url)
    try:
        async with replicas(proxy.url(db_url), tmp_path, JOBWORKER_REPLAY_TIMEOUT="1s") as r:
            proxy.freeze()  # no reply, no reset: what a partition looks like
            try:
                body = json.dumps({"text": "frozen"}).encode()
                reply = await r.post(r.a, body, {"Upstash-Signature": r.sign(body)})
                assert reply.status_code == 503 and "Retry-After" in reply.headers, reply.text
                log = (r.a.workdir / "stderr.log").read_text()
                assert "did not answer within 1s (JOBWORKER_REPLAY_TIMEOUT)" in log, log
            finally:
                proxy.thaw()
            again = json.dumps({"text": "thawed"}).encode()

            async def status() -> int:
                return (await r.post(r.a, again, {"Upstash-Signature": r.sign(again)})).status_code

            await eventually(status, lambda code: code == 200, within=30, what="a delivery after the thaw")
            assert r.texts() == ["thawed"]
    finally:
        await proxy.close()


def test_serve_refuses_to_start_when_the_replay_table_is_missing(empty_db_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBWORKER_", "QSTASH_"))}
    env.update(
        PYTHONPATH=str(REPO),
        QSTASH_CURRENT_SIGNING_KEY="sig_current",
        QSTASH_NEXT_SIGNING_KEY="sig_next",
        QSTASH_CALLBACK_URL="https://jobs.example.com",
        JOBWORKER_REPLAY_DATABASE_URL=empty_db_url,
    )
    argv = [sys.executable, "-m", "jobworker", "serve", "--tasks", "tests.endpoint_jobs", "--port", "0"]
    result = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "_private_jobworker_seen_signatures" in line and "jobworker migrate" in line, line


def test_serve_starts_while_the_replay_database_is_unreachable_and_answers_503(db_url: str) -> None:
    # A port nothing listens on: connections are refused at once.
    unreachable = psycopg.conninfo.make_conninfo(db_url, host="127.0.0.1", port=free_port())
    with serve(env={"JOBWORKER_REPLAY_DATABASE_URL": unreachable}) as served:
        body = json.dumps({"text": "unreachable"}).encode()
        headers = {"Upstash-Signature": served.sign("record", body)}
        reply = httpx.post(served.url("record"), content=body, headers=headers, timeout=60)
        assert reply.status_code == 503 and reply.headers["Retry-After"] == "30", reply.text
        assert reply.json()["error"]["code"] == "jobs.replay_store_unavailable"
        assert served.calls() == []
        log = (served.workdir / "stderr.log").read_text()
    assert "deliveries get 503 until it answers" in log and "could not record its signature" in log, log


async def test_create_app_and_asgi_app_share_the_table_named_by_the_env_var(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBWORKER_REPLAY_DATABASE_URL", db_url)
    monkeypatch.setenv("ENDPOINT_TEST_CALLS", str(tmp_path / "calls.jsonl"))
    public: list[str] = []

    def config(base: str) -> QStashConfig:
        public.append(base)
        return QStashConfig(current_signing_key=CURRENT, next_signing_key=NEXT, callback_url=public[0])

    def aiohttp_replica(base: str) -> web.Application:
        return create_app(endpoint_jobs.registry, config(base))

    async with serving(aiohttp_replica) as base:
        asgi = asgi_app(endpoint_jobs.registry, config(base))
        body = json.dumps({"text": "in-process"}).encode()
        headers = {"Upstash-Signature": signature(CURRENT, f"{base}/v1/jobs/run/record", body)}
        async with httpx.AsyncClient() as client:
            assert (await client.post(f"{base}/v1/jobs/run/record", content=body, headers=headers)).status_code == 200
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://asgi") as client:
            replay = await client.post("/v1/jobs/run/record", content=body, headers=headers)
        assert replay.status_code == 409, replay.text
        await lifespan_shutdown(asgi)  # closes the table's pool the ASGI app opened
    assert [json.loads(line)["text"] for line in (tmp_path / "calls.jsonl").read_text().splitlines()] == ["in-process"]


async def lifespan_shutdown(app: Any) -> None:
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def test_the_table_store_recovers_when_the_database_comes_back_after_starting_without_it(
    pg: PgServer, db_url: str
) -> None:
    store = PostgresSeenTokens(db_url, timeout=2)
    database_connections(pg, db_url, allow=False)
    try:
        with pytest.raises(ReplayStoreUnavailableError, match="replay database"):
            await store.first_use("jti_down", time.time() + 300)
    finally:
        database_connections(pg, db_url, allow=True)
    try:

        async def attempt() -> bool | str:
            try:
                return await store.first_use("jti_up", time.time() + 300)
            except ReplayStoreUnavailableError as exc:
                return str(exc)

        assert await eventually(attempt, lambda r: r is True, within=30, what="a recorded signature") is True
        assert await store.first_use("jti_up", time.time() + 300) is False
    finally:
        await store.close()


def documented_grants() -> str:
    doc = (REPO / "docs" / "qstash-endpoint.md").read_text()
    found = re.search(r"```sql\n(-- replay role.*?)```", doc, re.S)
    assert found, "docs/qstash-endpoint.md lost its replay role block"
    return found[1]


async def test_the_documented_grants_are_enough_to_record_and_prune(db_url: str) -> None:
    role = f"replay_{uuid.uuid4().hex[:8]}"
    grants = documented_grants().replace("jobworker_endpoint", role).replace("'change-me'", "'pw'")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(grants)  # type: ignore[arg-type]
        conn.execute(f"insert into {TABLE} values ('old', now() - interval '1 hour')")  # type: ignore[arg-type]
    store = PostgresSeenTokens(psycopg.conninfo.make_conninfo(db_url, user=role, password="pw"))
    try:
        assert await store.first_use("jti_granted", time.time() + 300) is True
        assert await store.first_use("jti_granted", time.time() + 300) is False
        await store.check()
    finally:
        await store.close()
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(f'drop owned by "{role}"')  # type: ignore[arg-type]
            conn.execute(f'drop role "{role}"')  # type: ignore[arg-type]
    assert await fetch(db_url, f"select jti from {TABLE}") == [{"jti": "jti_granted"}]  # type: ignore[arg-type]
