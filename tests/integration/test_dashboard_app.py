"""The dashboard over HTTP: pages render, and the safety rules hold (read-only default, sign-in, CSRF,
hidden payloads, confirmation before any change)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from jobworker import errors
from jobworker.dashboard.app import DashboardSettings, root_app
from tests.dashboard_seed import Seeded, seed

Client = Callable[..., Awaitable[TestClient]]  # type: ignore[type-arg]


@pytest.fixture
async def seeded(db_url: str) -> Seeded:
    return await seed(db_url)


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[Client]:
    started: list[TestClient] = []  # type: ignore[type-arg]

    async def start(**options: object) -> TestClient:  # type: ignore[type-arg]
        c = TestClient(TestServer(root_app(DashboardSettings(database_url=db_url, **options))))  # type: ignore[arg-type]
        await c.start_server()
        started.append(c)
        return c

    yield start
    for c in started:
        await c.close()


def csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
    assert found, "no CSRF token on the page"
    return found[1]


def exists(url: str, job_id: int) -> bool:
    with psycopg.connect(url) as conn:
        return (
            conn.execute("select 1 from graphile_worker._private_jobs where id = %s", (job_id,)).fetchone() is not None
        )


@pytest.mark.parametrize("path", ["/", "/partials/overview", "/jobs", "/failures", "/workers", "/queues", "/schedules"])
async def test_every_page_renders_read_only_without_buttons(client: Client, seeded: Seeded, path: str) -> None:
    c = await client()
    response = await c.get(path)
    text = await response.text()
    assert response.status == 200, text
    assert "/actions/" not in text and "csrf_token" not in text


async def test_read_only_refuses_actions(client: Client, seeded: Seeded, db_url: str) -> None:
    c = await client()
    response = await c.post("/actions/complete", data={"job_id": str(seeded.ready), "confirm": "yes"})
    assert response.status == 403 and "read-only" in await response.text()
    assert exists(db_url, seeded.ready)


def test_actions_need_a_way_to_know_who_acts() -> None:
    with pytest.raises(errors.ConfigurationError, match="--token"):
        DashboardSettings(database_url="postgresql://x/y", allow_actions=True)


async def test_token_gates_every_page_and_login_sets_a_cookie(client: Client, seeded: Seeded) -> None:
    c = await client(allow_actions=True, token="t0ken")
    response = await c.get("/jobs", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/login"
    assert (await c.post("/login", data={"token": "wrong"})).status == 200  # the form again, with an error
    assert (await c.get("/jobs", allow_redirects=False)).status == 303
    response = await c.post("/login", data={"token": "t0ken"}, allow_redirects=False)
    assert response.status == 303
    assert (await c.get("/jobs")).status == 200
    bearer = await client(allow_actions=True, token="t0ken")
    assert (await bearer.get("/jobs", headers={"Authorization": "Bearer t0ken"})).status == 200


async def test_forged_post_without_csrf_is_refused(client: Client, seeded: Seeded, db_url: str) -> None:
    c = await client(allow_actions=True, trust_header="X-Forwarded-User")
    user = {"X-Forwarded-User": "alice"}
    forged = await c.post("/actions/complete", data={"job_id": str(seeded.ready), "confirm": "yes"}, headers=user)
    assert forged.status == 403 and "CSRF" in await forged.text()
    wrong = await c.post(
        "/actions/complete", data={"job_id": str(seeded.ready), "confirm": "yes", "csrf_token": "0" * 64}, headers=user
    )
    assert wrong.status == 403
    # Another user's token does not work either: the token is bound to the user.
    page = await (await c.get("/jobs", headers={"X-Forwarded-User": "mallory"})).text()
    stolen = await c.post(
        "/actions/complete",
        data={"job_id": str(seeded.ready), "confirm": "yes", "csrf_token": csrf(page)},
        headers=user,
    )
    assert stolen.status == 403
    assert exists(db_url, seeded.ready)
    assert (await c.get("/jobs")).status == 401  # no header, no access


async def test_action_asks_for_confirmation_then_acts(
    client: Client, seeded: Seeded, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.INFO, "jobworker.dashboard")
    c = await client(allow_actions=True, trust_header="X-Forwarded-User")
    user = {"X-Forwarded-User": "alice"}
    token = csrf(await (await c.get("/jobs", headers=user)).text())
    ask = await c.post("/actions/complete", data={"job_id": str(seeded.ready), "csrf_token": token}, headers=user)
    page = await ask.text()
    assert ask.status == 200 and "Confirm: Complete" in page
    assert exists(db_url, seeded.ready)
    done = await c.post(
        "/actions/complete",
        data={"job_id": str(seeded.ready), "csrf_token": token, "confirm": "yes"},
        headers=user,
    )
    assert done.status == 200 and "1 job(s) completed" in await done.text()
    assert not exists(db_url, seeded.ready)
    assert "complete by alice" in caplog.text


async def test_hide_payloads(client: Client, seeded: Seeded) -> None:
    shown = await (await (await client()).get(f"/jobs/{seeded.ready}")).text()
    assert "s3cret-token" in shown
    hidden = await (await (await client(hide_payloads=True)).get(f"/jobs/{seeded.ready}")).text()
    assert "s3cret-token" not in hidden and "Payloads are hidden" in hidden


async def test_mounted_under_a_base_path(client: Client, seeded: Seeded) -> None:
    c = await client(base_path="/ops/jobs")
    page = await (await c.get("/ops/jobs/jobs")).text()
    assert 'href="/ops/jobs/jobs/' in page and 'src="/ops/jobs/static/dashboard.js"' in page
    assert (await c.get("/ops/jobs/static/dashboard.css")).status == 200
    assert (await c.get("/jobs")).status == 404


async def test_bad_filter_is_a_clear_400(client: Client, seeded: Seeded) -> None:
    response = await (await client()).get("/jobs?state=bogus")
    assert response.status == 400 and "state: &#x27;bogus&#x27; is not one of" in await response.text()


def test_cli_refuses_actions_without_a_user_in_one_line() -> None:
    import subprocess
    import sys

    # A subprocess: cli.main ends the process itself when threads are left, as pytest's are.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobworker",
            "--database-url",
            "postgresql://localhost/x",
            "dashboard",
            "--allow-actions",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "--token" in done.stderr and "--trust-header" in done.stderr


async def test_schedules_page_joins_definitions_with_the_schedulers_table(client: Client, seeded: Seeded) -> None:
    from jobworker.crontab import ScheduleEntry

    nightly = ScheduleEntry(id="nightly", task="cleanup", cron="0 3 * * *", timezone="Europe/Paris")
    hourly = ScheduleEntry(id="hourly", task="report", cron="0 * * * *")  # defined, never fired yet
    page = await (await (await client(schedules=(nightly, hourly))).get("/schedules")).text()
    rows = {m[1]: m[0] for m in re.finditer(r"<tr><td>(\w+)</td>.*?</tr>", page)}
    assert "0 3 * * *" in rows["nightly"] and "Europe/Paris" in rows["nightly"]
    assert rows["nightly"].count("<time") == 3  # next fire, last fired tick, known since
    assert "0 * * * *" in rows["hourly"] and rows["hourly"].count("<time") == 1  # only the next fire
    bare = await (await (await client()).get("/schedules")).text()
    assert "--schedules FILE" in bare and "nightly" in bare


async def test_healthz_answers_probes_without_sign_in(client: Client) -> None:
    c = await client(allow_actions=True, token="t0ken")
    response = await c.get("/healthz", allow_redirects=False)
    assert response.status == 200 and (await response.json()) == {"status": "ok"}


async def test_replicas_sharing_a_secret_accept_each_others_forms(client: Client, seeded: Seeded, db_url: str) -> None:
    one = await client(allow_actions=True, trust_header="X-Forwarded-User", secret=b"shared")
    two = await client(allow_actions=True, trust_header="X-Forwarded-User", secret=b"shared")
    other = await client(allow_actions=True, trust_header="X-Forwarded-User")  # its own random secret
    user = {"X-Forwarded-User": "alice"}
    token = csrf(await (await one.get("/jobs", headers=user)).text())
    form = {"job_id": str(seeded.ready), "csrf_token": token, "confirm": "yes"}
    assert (await other.post("/actions/complete", data=form, headers=user)).status == 403
    assert exists(db_url, seeded.ready)
    assert (await two.post("/actions/complete", data=form, headers=user)).status == 200
    assert not exists(db_url, seeded.ready)


async def test_exact_count_on_request_is_a_still_picture(client: Client, seeded: Seeded) -> None:
    c = await client(base_path="/ops")
    live = await (await c.get("/ops/")).text()
    assert 'data-live="/partials/overview"' in live
    exact = await (await c.get("/ops/?exact=1")).text()
    assert "data-live" not in exact and "Every row counted" in exact and 'href="/ops/"' in exact
    assert re.search(r'data-state="ready">2<', exact)
