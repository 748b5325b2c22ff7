"""Connections without timeouts: a peer that stops answering without a RST must not hang a worker.

The proxy freezes the worker's open connections (bytes are taken, nothing comes back, nothing is closed),
as a NAT or firewall that forgot them does, while new connections go through. The worker must notice
within its configured bound (JOBWORKER_OPERATION_TIMEOUT plus psycopg's cancel attempt) and carry on.
"""

from __future__ import annotations

from typing import Any

import pytest

from jobworker import db, errors
from jobworker.jobs import JobContext, define_job
from jobworker.settings import ConnectionSettings
from jobworker.worker_utils import WorkerUtils
from tests.integration.runtime import eventually, job_row, make_worker, running
from tests.tcp_proxy import TcpProxy


async def test_a_worker_whose_connections_freeze_without_a_reset_recovers(
    utils: WorkerUtils, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBWORKER_OPERATION_TIMEOUT", "1s")
    monkeypatch.setenv("JOBWORKER_CONNECT_TIMEOUT", "2s")

    @define_job("frozen", payload=dict)
    async def frozen(payload: dict[str, Any], ctx: JobContext) -> None:
        return None

    proxy = await TcpProxy.to_database(db_url)
    try:
        worker = make_worker(proxy.url(db_url), frozen)
        async with running(worker):
            before = await utils.add_job("frozen")
            await eventually(lambda: job_row(db_url, before.id), lambda r: r is None, what="a job ran")
            proxy.freeze_existing()
            after = await utils.add_job("frozen")
            await eventually(
                lambda: job_row(db_url, after.id), lambda r: r is None, within=30, what="a job ran after the freeze"
            )
    finally:
        await proxy.close()


def test_every_connection_gets_timeouts_and_keepalives_unless_the_url_sets_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBWORKER_TCP_USER_TIMEOUT", "20s")
    options = db.connect_options("postgresql://u@h/d?connect_timeout=3")
    assert "connect_timeout" not in options  # the URL's own value wins
    assert options["keepalives"] == 1 and options["keepalives_idle"] == 30 and options["tcp_user_timeout"] == 20000
    monkeypatch.setenv("JOBWORKER_OPERATION_TIMEOUT", "0")
    with pytest.raises(errors.ConfigurationError, match="operation_timeout"):
        ConnectionSettings.from_env()
