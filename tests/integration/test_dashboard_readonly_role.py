"""The read-only role documented in docs/dashboard.md can read every page's data and write nothing."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import psycopg
import pytest

from jobworker.dashboard.store import DashboardStore, JobFilter
from tests.dashboard_seed import Seeded, seed

DOC = Path(__file__).resolve().parents[2] / "docs" / "dashboard.md"


def documented_grants() -> str:
    found = re.search(r"```sql\n(-- read-only role.*?)```", DOC.read_text(), re.S)
    assert found, "docs/dashboard.md lost its read-only grants block"
    return found[1]


async def test_documented_grants_read_everything_and_write_nothing(db_url: str) -> None:
    seeded: Seeded = await seed(db_url)
    role = f"dash_{uuid.uuid4().hex[:8]}"
    grants = documented_grants().replace("jobworker_dashboard", role).replace("'change-me'", "'pw'")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(grants)  # type: ignore[arg-type]
    url = psycopg.conninfo.make_conninfo(db_url, user=role, password="pw")
    store = DashboardStore(url, "graphile_worker", read_only=True, refresh=0.01)
    await store.open()
    try:
        snap = await store.overview()
        assert snap.total("ready") == 2 and snap.workers_live == 1
        assert len(await store.list_jobs(JobFilter())) == 7
        assert (await store.job(seeded.ready)) is not None
        assert len(await store.failure_groups()) == 2
        assert len(await store.workers()) == 2 and len(await store.unregistered_locks()) == 1
        assert len(await store.queues()) == 1 and len(await store.schedules()) == 1
    finally:
        await store.close()
    with psycopg.connect(url, autocommit=True) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("select graphile_worker.complete_jobs(array[%s]::bigint[])", (seeded.ready,))
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"drop owned by {role}")  # type: ignore[arg-type]
        conn.execute(f"drop role {role}")  # type: ignore[arg-type]
