"""WorkerUtils keeps one connection; when the server drops it, reads reconnect transparently, while an
enqueue is never retried blindly (it may have committed before the drop) and the next call reconnects."""

from __future__ import annotations

import psycopg
import pytest

from jobworker.errors import DatabaseError
from jobworker.worker_utils import WorkerUtils


async def _drop_utils_connection(db_url: str, utils: WorkerUtils) -> None:
    """Kill every other session of the test's database: the one ``utils`` holds is among them."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as admin:
        cur = await admin.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity "
            "where datname = current_database() and pid <> pg_backend_pid()"
        )
        assert await cur.fetchall(), "utils holds no session to drop"


async def test_a_read_after_a_dropped_connection_reconnects(utils: WorkerUtils, db_url: str) -> None:
    await utils.add_job("t", {"n": 1})
    await _drop_utils_connection(db_url, utils)
    assert [j.task_identifier for j in await utils.list_jobs()] == ["t"]


async def test_an_enqueue_after_a_dropped_connection_fails_once_and_is_not_duplicated(
    utils: WorkerUtils, db_url: str
) -> None:
    await utils.add_job("t", {"n": 1})
    await _drop_utils_connection(db_url, utils)
    with pytest.raises(DatabaseError):
        await utils.add_job("t", {"n": 2})
    await utils.add_job("t", {"n": 3})
    assert len(await utils.list_jobs()) == 2
