"""Bad input at the job endpoint never runs a handler; the app mounts as an aiohttp sub-app and via ASGI."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import httpx
import pytest
from aiohttp import web

from jobworker import endpoint
from jobworker.config import QStashConfig
from tests import shared_jobs
from tests.qstash_standin import serving, signature

CURRENT = "sig_current_" + "c" * 24
NEXT = "sig_next_" + "n" * 27


@dataclass
class Site:
    base: str
    config: QStashConfig
    session: aiohttp.ClientSession

    async def post(
        self, name: str, body: bytes, *, sign: bool = True, headers: dict[str, str] | None = None
    ) -> aiohttp.ClientResponse:
        headers = dict(headers or {})
        url = self.config.destination(name)
        if sign:
            headers.setdefault("Upstash-Signature", signature(CURRENT, url, body))
        headers.setdefault("Upstash-Message-Id", "msg_test")
        return await self.session.post(f"{self.base}/v1/jobs/run/{name}", data=body, headers=headers)


def config_for(base: str) -> QStashConfig:
    return QStashConfig(current_signing_key=CURRENT, next_signing_key=NEXT, callback_url=base)


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    shared_jobs.CALLS.clear()
    async with serving(
        lambda base: endpoint.create_app(shared_jobs.registry, config_for(base), max_body_bytes=1000)
    ) as base:
        async with aiohttp.ClientSession() as session:
            yield Site(base, config_for(base), session)


async def error_of(response: aiohttp.ClientResponse) -> tuple[int, str, str | None]:
    body = await response.json()
    return response.status, body["error"]["code"], response.headers.get("Upstash-NonRetryable-Error")


GOOD = json.dumps({"name": "Ada"}).encode()


async def test_valid_delivery_runs(site: Site) -> None:
    response = await site.post("greet", GOOD, headers={"Upstash-Retried": "1"})
    assert response.status == 200
    assert [(c.job, c.attempt, c.job_id) for c in shared_jobs.CALLS] == [("greet", 2, "msg_test")]


async def test_missing_signature_header(site: Site) -> None:
    assert await error_of(await site.post("greet", GOOD, sign=False)) == (401, "jobs.invalid_signature", None)
    assert shared_jobs.CALLS == []


async def test_garbage_jwt(site: Site) -> None:
    for garbage in ("not-a-jwt", "a.b.c", signature(CURRENT, "x", GOOD).replace(".", ".x", 1)):
        response = await site.post("greet", GOOD, headers={"Upstash-Signature": garbage})
        assert await error_of(response) == (401, "jobs.invalid_signature", None)
    assert shared_jobs.CALLS == []


async def test_claims_are_checked_each_with_its_own_message(site: Site) -> None:
    url = site.config.destination("greet")
    cases = {
        "issuer is not Upstash": signature(CURRENT, url, GOOD, iss="Someone"),
        "has expired": signature(CURRENT, url, GOOD, now=time.time() - 400),
        "not valid yet": signature(CURRENT, url, GOOD, now=time.time() + 60),
        "body hash": signature(CURRENT, url, b"other body"),
        "not 'http": signature(CURRENT, "https://evil.example.com/v1/jobs/run/greet", GOOD),
        "does not match": signature("sig_other_" + "o" * 26, url, GOOD),
    }
    for fragment, token in cases.items():
        response = await site.post("greet", GOOD, headers={"Upstash-Signature": token})
        body = await response.json()
        assert response.status == 401 and fragment in body["error"]["message"], (fragment, body)
    # A token for another job's URL does not run this job.
    other = signature(CURRENT, site.config.destination("doomed"), GOOD)
    assert (await site.post("greet", GOOD, headers={"Upstash-Signature": other})).status == 401
    # The Host header plays no part: the expected URL comes from QSTASH_CALLBACK_URL.
    forged = await site.post("greet", GOOD, headers={"Host": "evil.example.com"})
    assert forged.status == 200
    assert len(shared_jobs.CALLS) == 1


async def test_next_key_is_tried_only_after_a_signature_mismatch(site: Site) -> None:
    url = site.config.destination("greet")
    assert (await site.post("greet", GOOD, headers={"Upstash-Signature": signature(NEXT, url, GOOD)})).status == 200
    expired_next = signature(NEXT, url, GOOD, now=time.time() - 400)
    response = await site.post("greet", GOOD, headers={"Upstash-Signature": expired_next})
    assert "has expired" in (await response.json())["error"]["message"]


async def test_non_json_body_unknown_job_invalid_payload_are_permanent(site: Site) -> None:
    assert await error_of(await site.post("greet", b"{nope")) == (489, "jobs.invalid_payload", "true")
    assert await error_of(await site.post("greet", b'{"times": 2}')) == (489, "jobs.invalid_payload", "true")
    assert await error_of(await site.post("no_such_job", GOOD)) == (489, "jobs.unknown_job", "true")
    assert shared_jobs.CALLS == []


async def test_exhausted_attempts_are_permanent(site: Site) -> None:
    response = await site.post("greet", GOOD, headers={"Upstash-Retried": "3"})  # attempt 4 of max 3
    assert await error_of(response) == (489, "jobs.attempts_exhausted", "true")
    forwarded = await site.post("greet", GOOD, headers={"Upstash-Retried": "1", "Jobworker-Max-Attempts": "1"})
    assert (await error_of(forwarded))[1] == "jobs.attempts_exhausted"
    assert shared_jobs.CALLS == []


async def test_oversize_bodies_get_489_unread(site: Site) -> None:
    big = json.dumps({"name": "x" * 2000}).encode()
    assert await error_of(await site.post("greet", big)) == (489, "jobs.body_too_large", "true")

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the limit applies while streaming
        for _ in range(10):
            yield b" " * 300

    url = site.config.destination("greet")
    response = await site.session.post(
        f"{site.base}/v1/jobs/run/greet", data=chunked(), headers={"Upstash-Signature": signature(CURRENT, url, b"")}
    )
    assert response.status == 489
    assert shared_jobs.CALLS == []


async def test_healthz_and_metrics(site: Site) -> None:
    await site.post("greet", GOOD)
    health = await site.session.get(f"{site.base}/healthz")
    assert health.status == 200 and (await health.json()) == {"status": "ok"}
    metrics = await (await site.session.get(f"{site.base}/metrics")).text()
    assert 'jobworker_http_deliveries_total{status="200",task="greet"}' in metrics


async def test_mounts_as_an_aiohttp_sub_app() -> None:
    shared_jobs.CALLS.clear()

    def make(base: str) -> web.Application:
        parent = web.Application()
        parent.add_subapp("/jobs", endpoint.create_app(shared_jobs.registry, config_for(base + "/jobs")))
        return parent

    async with serving(make) as base, aiohttp.ClientSession() as session:
        url = f"{base}/jobs/v1/jobs/run/greet"
        response = await session.post(url, data=GOOD, headers={"Upstash-Signature": signature(CURRENT, url, GOOD)})
        assert response.status == 200
    assert [c.job for c in shared_jobs.CALLS] == ["greet"]


async def test_asgi_adapter_serves_the_same_rules() -> None:
    shared_jobs.CALLS.clear()
    base = "https://api.example.com/jobs"
    app = endpoint.asgi_app(shared_jobs.registry, config_for(base), max_body_bytes=1000)
    transport = httpx.ASGITransport(app=app, root_path="/jobs")
    async with httpx.AsyncClient(transport=transport, base_url="https://api.example.com") as client:
        url = f"{base}/v1/jobs/run/greet"
        ok = await client.post(
            "/jobs/v1/jobs/run/greet", content=GOOD, headers={"Upstash-Signature": signature(CURRENT, url, GOOD)}
        )
        assert ok.status_code == 200
        unsigned = await client.post("/jobs/v1/jobs/run/greet", content=GOOD)
        assert (unsigned.status_code, unsigned.json()["error"]["code"]) == (401, "jobs.invalid_signature")
        big_unsigned = await client.post("/jobs/v1/jobs/run/greet", content=b"x" * 2000)
        assert big_unsigned.status_code == 401  # the signature comes first
        big = await client.post(
            "/jobs/v1/jobs/run/greet", content=b"x" * 2000, headers={"Upstash-Signature": signature(CURRENT, url, b"")}
        )
        assert big.status_code == 489
        doomed_url = f"{base}/v1/jobs/run/doomed"
        doomed = await client.post(
            "/jobs/v1/jobs/run/doomed",
            content=GOOD,
            headers={"Upstash-Signature": signature(CURRENT, doomed_url, GOOD)},
        )
        assert (doomed.status_code, doomed.headers["upstash-nonretryable-error"]) == (489, "true")
        assert (await client.get("/jobs/healthz")).status_code == 200
    assert [c.job for c in shared_jobs.CALLS] == ["greet", "doomed"]
