"""A captured signed delivery cannot be run again, against ``jobworker serve`` as a process; a plain http://
callback URL (other than localhost) is refused at start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import jwt
import pytest
from aiohttp import web

from jobworker.config import QStashConfig
from jobworker.endpoint import MemorySeenTokens, create_app
from tests import endpoint_jobs
from tests.qstash_standin import serving, signature
from tests.serve_process import CURRENT, REPO, Served, serve

BODY = json.dumps({"text": "once"}).encode()


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with serve() as s:
        yield s


def post(served: Served, token: str, **headers: str) -> httpx.Response:
    sent = {"Upstash-Signature": token, "Upstash-Message-Id": "msg_first", **headers}
    return httpx.post(served.url("record"), content=BODY, headers=sent, timeout=30)


def test_a_replayed_signature_is_refused_without_running_the_handler(served: Served) -> None:
    token = served.sign("record", BODY)
    assert post(served, token).status_code == 200
    # The replay changes what the signature does not cover: message id, attempt, max attempts, job key.
    replay = post(
        served,
        token,
        **{
            "Upstash-Message-Id": "msg_forged",
            "Upstash-Retried": "0",
            "Jobworker-Max-Attempts": "99",
            "Jobworker-Job-Key": "forged",
        },
    )
    assert replay.status_code == 409, replay.text
    assert replay.json()["error"]["code"] == "jobs.replayed"
    assert replay.headers.get("Upstash-NonRetryable-Error") is None  # QStash's own retry, freshly signed, runs
    assert [(c["job_id"], c["key"]) for c in served.calls() if c["text"] == "once"] == [("msg_first", None)]


def test_a_fresh_signature_for_the_same_body_runs(served: Served) -> None:
    before = len(served.calls())
    for _ in range(2):  # what QStash does on a retry: the same body, a new signature (a new jti)
        assert post(served, served.sign("record", BODY)).status_code == 200
    assert len(served.calls()) == before + 2


def test_a_signature_without_a_token_id_is_refused(served: Served) -> None:
    claims = jwt.decode(served.sign("record", BODY), options={"verify_signature": False})
    del claims["jti"]
    tokens = [jwt.encode(claims, CURRENT, algorithm="HS256")]
    tokens += [served.sign("record", BODY, jti=jti) for jti in (None, "", 7)]
    before = len(served.calls())
    for token in tokens:
        response = post(served, token)
        message = response.json()["error"]["message"]
        assert response.status_code == 401 and ("jti" in message or "JWT ID" in message), message
    assert len(served.calls()) == before


@pytest.mark.parametrize("url", ["http://jobs.example.com", "http://10.0.0.7:8080", "ftp://jobs.example.com"])
def test_serve_refuses_a_callback_url_that_is_not_https(url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBWORKER_", "QSTASH_"))}
    env.update(
        PYTHONPATH=str(REPO),
        QSTASH_CURRENT_SIGNING_KEY="sig_current",
        QSTASH_NEXT_SIGNING_KEY="sig_next",
        QSTASH_CALLBACK_URL=url,
    )
    result = subprocess.run(
        [sys.executable, "-m", "jobworker", "serve", "--tasks", "tests.endpoint_jobs", "--port", "0"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "QSTASH_CALLBACK_URL" in line and "https://" in line


async def test_replicas_sharing_a_seen_tokens_store_refuse_a_replay_across_them() -> None:
    shared = MemorySeenTokens()  # any SeenTokens implementation; both replicas get the same one
    bases: list[str] = []

    def replica(base: str) -> web.Application:
        bases.append(base)
        config = QStashConfig(current_signing_key=CURRENT, next_signing_key="n" * 32, callback_url=bases[0])
        return create_app(endpoint_jobs.registry, config, seen_tokens=shared)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENDPOINT_TEST_CALLS", os.devnull)
        async with serving(replica) as first, serving(replica) as second, httpx.AsyncClient() as client:
            url = f"{first}/v1/jobs/run/record"  # the one public URL both replicas serve
            headers = {"Upstash-Signature": signature(CURRENT, url, BODY)}
            assert (await client.post(url, content=BODY, headers=headers)).status_code == 200
            again = await client.post(f"{second}/v1/jobs/run/record", content=BODY, headers=headers)
            assert again.status_code == 409, again.text
    assert len(shared) == 1
