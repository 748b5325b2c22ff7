"""The overview on a million jobs reads a bounded amount: a block sample for the counts and an index for the
oldest waiting job, never a whole-table scan. Checked with EXPLAIN (plans, not timings: the machine is shared)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from jobworker import sql
from jobworker.dashboard.store import EXACT_LIMIT, SAMPLE_ROWS
from tests.dashboard_seed import BIG_ROWS, seed_big
from tests.pg import PgServer


@pytest.fixture(scope="module")
def big_url(pg: PgServer) -> Iterator[str]:
    url = pg.create_database()
    seed_big(url)
    yield url
    pg.drop_database(url)


def plan(url: str, name: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every node of the query's plan, flattened."""
    with psycopg.connect(url, autocommit=True) as conn:
        text = sql.query(name, "graphile_worker")
        [[raw]] = conn.execute(b"explain (format json) " + text.encode(), params).fetchall()  # type: ignore[arg-type]
    doc = raw if isinstance(raw, list) else json.loads(raw)
    nodes: list[dict[str, Any]] = []

    def walk(node: dict[str, Any]) -> None:
        nodes.append(node)
        for child in node.get("Plans", []):
            walk(child)

    walk(doc[0]["Plan"])
    return nodes


def scans_of_jobs(nodes: list[dict[str, Any]]) -> list[str]:
    return [n["Node Type"] for n in nodes if n.get("Relation Name") == "_private_jobs"]


def test_the_big_table_takes_the_sampled_path(big_url: str) -> None:
    with psycopg.connect(big_url) as conn:
        [[estimate]] = conn.execute(sql.query("dashboard_table_size", "graphile_worker")).fetchall()
    assert estimate > EXACT_LIMIT and abs(estimate - BIG_ROWS) < BIG_ROWS * 0.1


def test_overview_counts_scan_a_sample_not_the_table(big_url: str) -> None:
    percent = 100.0 * SAMPLE_ROWS / BIG_ROWS
    assert scans_of_jobs(plan(big_url, "dashboard_counts_sampled", {"percent": percent})) == ["Sample Scan"]


def test_oldest_waiting_job_walks_the_claim_index(big_url: str) -> None:
    nodes = plan(big_url, "dashboard_oldest_waiting")
    scans = [(n["Node Type"], n.get("Index Name")) for n in nodes if n.get("Relation Name") == "_private_jobs"]
    assert scans and all(kind in ("Index Only Scan", "Index Scan") for kind, _ in scans), scans
    assert {index for _, index in scans} == {"jobs_main_index"}


def test_jobs_page_walks_the_primary_key(big_url: str) -> None:
    params = {"before": None, "task": None, "queue_name": None, "key": None, "error": None, "state": None, "limit": 51}
    nodes = plan(big_url, "dashboard_list_jobs", params)
    assert "Seq Scan" not in scans_of_jobs(nodes)
    assert any(n.get("Index Name") == "_private_jobs_pkey" for n in nodes)
    params["before"] = BIG_ROWS // 2
    assert any(n.get("Index Name") == "_private_jobs_pkey" for n in plan(big_url, "dashboard_list_jobs", params))


async def test_big_table_counts_are_labelled_estimates_and_exact_on_request(big_url: str) -> None:
    from jobworker.dashboard import pages
    from jobworker.dashboard.store import DashboardStore

    with psycopg.connect(big_url) as conn:
        [[failed]] = conn.execute(
            "select count(*) from graphile_worker._private_jobs where locked_at is null and attempts >= max_attempts"
        ).fetchall()
        [[total]] = conn.execute("select count(*) from graphile_worker._private_jobs").fetchall()
    store = DashboardStore(big_url, "graphile_worker", read_only=True, refresh=3600)
    await store.open()
    try:
        live = await store.overview()
        exact = await store.exact_counts()
        sent = store.queries_run
        assert await store.exact_counts() is exact and store.queries_run == sent  # reused, not counted again
    finally:
        await store.close()
    assert live.sampled_percent is not None
    text = pages.overview_live(live, "/jobs")
    assert "Estimated counts." in text and 'href="/jobs/?exact=1"' in text and "Ready (estimated)" in text
    assert exact.sampled_percent is None and exact.counted_in_ms is not None
    assert exact.total("failed") == failed and sum(c.count for c in exact.counts) == total
    assert "Every row counted" in pages.overview_live(exact, "/jobs") and "≈" not in pages.overview_live(exact, "")
