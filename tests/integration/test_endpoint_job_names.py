"""Job names that are not URL-safe (spaces, ``/``, ``%``, ``?``, non-ASCII) are percent-encoded by the provider
and decoded by the endpoint: the real SDK publishes to the stand-in, which delivers to ``jobworker serve``."""

from __future__ import annotations

import asyncio
import time
import urllib.parse

import httpx
import pytest

from jobworker import errors
from jobworker.config import QStashConfig
from jobworker.endpoint import asgi_app
from jobworker.providers.qstash import QStashJobQueue
from tests import endpoint_jobs
from tests.qstash_standin import running_standin, signature
from tests.serve_process import serve


async def test_an_odd_job_name_is_delivered_and_run() -> None:
    async with running_standin() as standin:
        keys = {"QSTASH_CURRENT_SIGNING_KEY": standin.current_key, "QSTASH_NEXT_SIGNING_KEY": standin.next_key}
        with serve(env=keys) as served:
            config = QStashConfig(token=standin.token, url=standin.url, callback_url=served.base)
            queue = QStashJobQueue(config)
            try:
                sent = await queue.enqueue(endpoint_jobs.odd, endpoint_jobs.Note(text="odd"), job_key="k ü")
            finally:
                await queue.close()
            message = await standin.settled(sent.id, within=30)
            assert [a.status for a in message.attempts] == [200], message.attempts
            assert message.destination.endswith("/v1/jobs/run/mail%20to%2F%C3%BC%20100%25%3F%23")
            deadline = time.monotonic() + 10
            while not served.calls():
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            assert [(c["job"], c["text"], c["key"]) for c in served.calls()] == [(endpoint_jobs.ODD_NAME, "odd", "k ü")]


async def test_the_asgi_adapter_decodes_the_name_too() -> None:
    base = "https://api.example.com/jobs"
    config = QStashConfig(current_signing_key="sig_c" * 8, next_signing_key="sig_n" * 8, callback_url=base)
    app = asgi_app(endpoint_jobs.registry, config)
    url = config.destination(endpoint_jobs.ODD_NAME)
    body = b'{"text": "asgi"}'
    transport = httpx.ASGITransport(app=app, root_path="/jobs")
    async with httpx.AsyncClient(transport=transport, base_url="https://api.example.com") as client:
        # The handler appends to ENDPOINT_TEST_CALLS; here only the status matters, so point it at /dev/null.
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("ENDPOINT_TEST_CALLS", "/dev/null")
            path = urllib.parse.urlsplit(url).path
            ok = await client.post(path, content=body, headers={"Upstash-Signature": signature("sig_c" * 8, url, body)})
        assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_names_cannot_be_urls(name: str) -> None:
    with pytest.raises(errors.ConfigurationError, match="cannot be delivered by QStash"):
        QStashConfig(callback_url="https://x.example").destination(name)
