"""The dashboard in a real headless browser (Debian's chromium through Playwright)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from jobworker import JobContext, JobRegistry, Worker, define_job
from tests.browser.conftest import Dashboard

pytestmark = pytest.mark.interop  # needs node and graphile-worker (the Node-added job)
PAGES = [
    ("overview", "/", "Overview"),
    ("jobs", "/jobs", "Jobs"),
    ("failures", "/failures", "Failures"),
    ("workers", "/workers", "Workers"),
    ("queues", "/queues", "Queues"),
    ("schedules", "/schedules", "Schedules"),
]
USER = {"X-Forwarded-User": "alice"}


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    # bypass_csp lets axe-core be injected: the dashboard's own CSP forbids inline scripts, as it should.
    context = await browser.new_context(
        extra_http_headers=USER, viewport={"width": 1280, "height": 900}, bypass_csp=True
    )
    p = await context.new_page()
    yield p
    await context.close()


def job_row(url: str, job_id: int) -> dict[str, Any] | None:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(
            "select id, priority, attempts, max_attempts, last_error, run_at <= now() as due, key"
            " from graphile_worker._private_jobs where id = %s",
            (job_id,),
        ).fetchone()


async def critical_violations(page: Any, axe: Path) -> list[str]:
    await page.add_script_tag(path=str(axe))
    result = await page.evaluate("async () => await axe.run(document)")
    return [f"{v['id']}: {v['help']}" for v in result["violations"] if v["impact"] == "critical"]


@pytest.mark.parametrize(("name", "path", "heading"), PAGES)
async def test_each_page_loads_over_a_million_jobs_accessibly(
    big: Dashboard, page: Any, axe_script: Path, artifacts: Path, name: str, path: str, heading: str
) -> None:
    response = await page.goto(big.url + path)
    assert response.status == 200
    assert await page.inner_text("h1") == heading
    await page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
    assert await critical_violations(page, axe_script) == []
    # Read-only: no action anywhere on the page.
    assert await page.locator("form[action*='/actions/']").count() == 0


async def test_overview_shows_estimated_counts_and_workers(big: Dashboard, page: Any) -> None:
    await page.goto(big.url + "/")
    ready = await page.inner_text("[data-state=ready]")
    assert ready.startswith("≈") and int(ready[1:].replace(",", "")) > 500_000
    assert await page.inner_text("[data-workers-live]") == "1"
    assert "block sample" in await page.inner_text("main")


async def test_node_added_job_page(big: Dashboard, page: Any, axe_script: Path, artifacts: Path) -> None:
    await page.goto(f"{big.url}/jobs/{big.node_job}")
    text = await page.inner_text("main")
    assert "node_task" in text and "node-queue" in text and '"from": "node"' in text
    await page.screenshot(path=str(artifacts / "job.png"), full_page=True)
    assert await critical_violations(page, axe_script) == []


@pytest.mark.parametrize(
    ("field", "value", "expect"),
    [
        ("state", "failed", "\tfailed\t"),
        ("task", "build_report", "build_report"),
        ("queue", "node-queue", "node_task"),
        ("key", "digest:bob", "send_email"),
        ("error", "took too long", "flaky_call"),
    ],
)
async def test_each_filter(big: Dashboard, page: Any, field: str, value: str, expect: str) -> None:
    await page.goto(big.url + "/jobs")
    if field in ("state", "task", "queue"):
        await page.select_option(f"select[name={field}]", value)
    else:
        await page.fill(f"input[name={field}]", value)
    await page.click("form.filters button")
    await page.wait_for_url(f"**{field}=*")
    rows = page.locator("main table tbody tr")
    assert await rows.count() >= 1
    for text in await rows.all_inner_texts():
        assert expect in text


async def test_keyset_pagination_over_a_million_rows(big: Dashboard, page: Any) -> None:
    await page.goto(big.url + "/jobs")
    first = await page.inner_text("main table tbody tr:first-child td:first-child")
    await page.click("a[rel=next]")
    second = await page.inner_text("main table tbody tr:first-child td:first-child")
    assert int(second) < int(first)


async def test_narrow_viewport_has_no_sideways_scroll(big: Dashboard, browser: Any, artifacts: Path) -> None:
    context = await browser.new_context(viewport={"width": 360, "height": 740}, bypass_csp=True)
    p = await context.new_page()
    try:
        for name, path, _ in PAGES:
            await p.goto(big.url + path)
            overflow = await p.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{name} scrolls sideways by {overflow}px on a 360px screen"
        await p.goto(big.url + "/jobs")
        await p.screenshot(path=str(artifacts / "jobs-narrow.png"), full_page=False)
    finally:
        await context.close()


async def test_read_only_refuses_a_post(big: Dashboard, page: Any) -> None:
    await page.goto(big.url + "/jobs")
    response = await page.request.post(
        big.url + "/actions/complete", form={"job_id": str(big.seeded.ready), "confirm": "yes"}
    )
    assert response.status == 403
    assert job_row(big.db_url, big.seeded.ready) is not None


# -- actions (a dashboard started with --allow-actions) --------------------------------------------
async def confirm(page: Any, **fields: str) -> str:
    """On the confirmation page: fill the extra fields, confirm, and return the result message."""
    assert (await page.inner_text("h1")).startswith("Confirm:")
    for name, value in fields.items():
        await page.fill(f"input[name={name}]", value)
    await page.click("button:has-text('Confirm')")
    await page.wait_for_selector("[role=status]")
    return str(await page.inner_text("[role=status]"))


async def bulk(page: Any, base: str, ids: list[int], button: str) -> None:
    await page.goto(base + "/jobs")
    for job_id in ids:
        await page.check(f"input[name=job_id][value='{job_id}']")
    await page.click(f"#bulk button:has-text('{button}')")


async def test_bulk_actions_change_the_database(small: Dashboard, page: Any) -> None:
    s = small.seeded
    await bulk(page, small.url, [s.scheduled], "Run now")
    assert "1 job(s) will run now" in await confirm(page)
    assert job_row(small.db_url, s.scheduled)["due"] is True  # type: ignore[index]

    await bulk(page, small.url, [s.scheduled, s.keyed], "Change priority")
    assert "2 job(s) now have priority 7" in await confirm(page, priority="7")
    assert job_row(small.db_url, s.keyed)["priority"] == 7  # type: ignore[index]

    await bulk(page, small.url, [s.scheduled], "Fail permanently")
    assert "failed permanently" in await confirm(page, reason="not needed")
    row = job_row(small.db_url, s.scheduled)
    assert row["attempts"] == row["max_attempts"] and "failed by alice" in row["last_error"]  # type: ignore[index]

    await bulk(page, small.url, [s.scheduled], "Re-enqueue failed")
    assert "1 job(s) re-enqueued" in await confirm(page)
    assert job_row(small.db_url, s.scheduled)["attempts"] == 0  # type: ignore[index]

    await bulk(page, small.url, [s.ready, s.running], "Complete")
    message = await confirm(page)
    assert "1 job(s) completed" in message and f"skipped {s.running}" in message
    assert job_row(small.db_url, s.ready) is None and job_row(small.db_url, s.running) is not None


async def test_single_job_actions_and_running_job_has_none(small: Dashboard, page: Any) -> None:
    await page.goto(f"{small.url}/jobs/{small.seeded.running}")
    assert await page.locator("form[action*='/actions/']").count() == 0
    assert "does not act on running jobs" in await page.inner_text("main")
    await page.goto(f"{small.url}/jobs/{small.node_job}")
    await page.click("button:has-text('Complete')")
    assert "1 job(s) completed" in await confirm(page)
    assert job_row(small.db_url, small.node_job) is None


async def test_delete_by_key_retry_group_and_sweep(small: Dashboard, page: Any) -> None:
    s = small.seeded
    await page.goto(small.url + "/jobs")
    await page.fill("input[name=job_key]", "digest:bob")
    await page.click("button:has-text('Delete by key')")
    assert "deleted" in await confirm(page)
    assert job_row(small.db_url, s.keyed) is None

    await page.goto(small.url + "/failures")
    await page.locator("tr", has_text="TimeoutError").locator("button:has-text('Retry group')").click()
    assert "1 job(s) will run now" in await confirm(page)
    assert job_row(small.db_url, s.failed)["attempts"] == 0  # type: ignore[index]

    await page.goto(small.url + "/workers")
    await page.click("button:has-text('Sweep stale workers')")
    assert "dry run: would recover 1 job(s) from 1 stale worker(s)" in await page.inner_text("main")
    assert "node-orphan" in await page.inner_text("main")
    assert "recovered 1 job(s)" in await confirm(page)
    assert job_row(small.db_url, s.orphan) is not None
    with psycopg.connect(small.db_url) as conn:
        holder = conn.execute("select locked_by from graphile_worker._private_jobs where id = %s", (s.orphan,))
        assert holder.fetchone() == (None,)


async def test_forged_request_without_csrf_token_is_refused(small: Dashboard, page: Any) -> None:
    await page.goto(small.url + "/jobs")  # signed in (the proxy header), but the form token is not sent
    response = await page.request.post(
        small.url + "/actions/complete", form={"job_id": str(small.seeded.ready), "confirm": "yes"}
    )
    assert response.status == 403 and "CSRF" in await response.text()
    assert job_row(small.db_url, small.seeded.ready) is not None


async def test_live_update_shows_a_job_finishing(small: Dashboard, page: Any, artifacts: Path) -> None:
    async def handler(payload: dict[str, Any], ctx: JobContext) -> None:
        return None

    live = define_job("live_task", payload=dict[str, Any], handler=handler)
    from jobworker.worker_utils import WorkerUtils

    async with WorkerUtils(small.db_url) as u:
        await u.add_job("live_task", {})
    await page.goto(small.url + "/")
    row = page.locator("#live tr", has_text="live_task")
    await row.wait_for()
    assert "1" in await row.inner_text()
    loads = await page.evaluate("performance.getEntriesByType('navigation').length")
    processed = await Worker(JobRegistry([live]), database_url=small.db_url).run_once()
    assert processed == 1
    await row.wait_for(state="detached", timeout=20_000)  # the next polls replace the region
    assert await page.evaluate("performance.getEntriesByType('navigation').length") == loads  # no reload
    await page.screenshot(path=str(artifacts / "overview-live.png"), full_page=True)
