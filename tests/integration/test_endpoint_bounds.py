"""Work before authentication is bounded, against ``jobworker serve`` as a process: the signature is checked
before the body is read, the body has a deadline, deliveries at once are capped, and 300 slow unsigned
uploads leave the server's memory flat."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.serve_process import REPO, Served, serve

MiB = 1024 * 1024


def head(served: Served, name: str, length: int, token: str | None = None) -> bytes:
    lines = [
        f"POST /v1/jobs/run/{name} HTTP/1.1",
        f"Host: 127.0.0.1:{served.port}",
        "Content-Type: application/json",
        f"Content-Length: {length}",
        "Upstash-Message-Id: msg_bounds",
    ]
    if token is not None:
        lines.append(f"Upstash-Signature: {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def status_line(sock: socket.socket, within: float) -> str:
    """The response's status line, or AssertionError when none arrives within ``within`` seconds."""
    sock.settimeout(within)
    try:
        data = sock.recv(4096)
    except TimeoutError:
        raise AssertionError(f"no response within {within} s") from None
    return data.split(b"\r\n", 1)[0].decode()


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with serve(env={"JOBWORKER_BODY_TIMEOUT": "1s"}) as s:
        yield s


def test_an_unsigned_request_is_refused_before_its_body_arrives(served: Served) -> None:
    with socket.create_connection(("127.0.0.1", served.port)) as sock:
        sock.sendall(head(served, "record", 500_000))  # headers only: the body never comes
        assert status_line(sock, within=20).startswith("HTTP/1.1 401")


def test_a_badly_signed_request_is_refused_before_its_body_arrives(served: Served) -> None:
    token = served.sign("other_job", b"")  # valid key, wrong URL: no need to read the body to know
    with socket.create_connection(("127.0.0.1", served.port)) as sock:
        sock.sendall(head(served, "record", 500_000, token))
        assert status_line(sock, within=20).startswith("HTTP/1.1 401")


def test_a_signed_body_that_stalls_gets_408_after_the_body_timeout(served: Served) -> None:
    body = json.dumps({"text": "slow"}).encode()
    with socket.create_connection(("127.0.0.1", served.port)) as sock:
        sock.sendall(head(served, "record", len(body), served.sign("record", body)) + body[:5])
        assert status_line(sock, within=30).startswith("HTTP/1.1 408")  # JOBWORKER_BODY_TIMEOUT=1s
    assert served.calls() == []


def test_over_max_concurrency_answers_503_with_retry_after() -> None:
    with serve("--max-concurrency", "2") as served:
        release = served.workdir / "release"

        def post(name: str, payload: dict[str, object]) -> httpx.Response:
            body = json.dumps(payload).encode()
            headers = {"Upstash-Signature": served.sign(name, body), "Upstash-Message-Id": "msg_c"}
            return httpx.post(served.url(name), content=body, headers=headers, timeout=60)

        async def scenario() -> None:
            holds = [asyncio.create_task(asyncio.to_thread(post, "hold", {"release": str(release)})) for _ in range(2)]
            deadline = time.monotonic() + 30
            while len(served.calls()) < 2:  # both slots are taken by running handlers
                assert time.monotonic() < deadline, served.calls()
                await asyncio.sleep(0.02)
            busy = await asyncio.to_thread(post, "record", {"text": "third"})
            assert busy.status_code == 503, busy.text
            assert busy.headers["Retry-After"] == "1" and busy.json()["error"]["code"] == "jobs.busy"
            release.touch()
            assert [r.status_code for r in await asyncio.gather(*holds)] == [200, 200]
            again = await asyncio.to_thread(post, "record", {"text": "fourth"})
            assert again.status_code == 200

        asyncio.run(scenario())
        assert [c["text"] for c in served.calls() if c["job"] == "record"] == ["fourth"]


async def _slow_unsigned_upload(served: Served, burst: int, bursts_done: list[int], stop: asyncio.Event) -> None:
    """Claims a 1,000,000-byte body, sends ``burst`` bytes at once, then one byte every 100 ms until ``stop``."""
    writer = None
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(head(served, "record", 1_000_000) + b" " * burst)
        await asyncio.wait_for(writer.drain(), 30)
        bursts_done.append(1)
        while not stop.is_set():
            writer.write(b" ")
            await asyncio.wait_for(writer.drain(), 30)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)
    except (OSError, TimeoutError):
        bursts_done.append(1)  # the server closed the connection: what it should do with an unsigned upload
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def test_rss_stays_flat_under_300_slow_unsigned_uploads() -> None:
    with serve() as served:
        async with httpx.AsyncClient() as client:  # warm up: the first requests allocate what every request needs
            for _ in range(20):
                await client.post(served.url("record"), content=b"{}", headers={"Upstash-Signature": "x"})
        before = served.rss_kib()
        stop, bursts_done = asyncio.Event(), []
        uploads = [
            asyncio.create_task(_slow_unsigned_upload(served, 900 * 1024, bursts_done, stop)) for _ in range(300)
        ]
        deadline = time.monotonic() + 120
        while len(bursts_done) < len(uploads):  # every upload has sent its burst (or was cut off)
            assert time.monotonic() < deadline, f"only {len(bursts_done)} of 300 uploads sent their first bytes"
            await asyncio.sleep(0.05)
        peak = before
        for _ in range(20):  # the uploads still trickle while we sample
            peak = max(peak, served.rss_kib())
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*uploads)
        grown = (peak - before) / 1024
        # Reading those bodies would hold 300 x 900 KiB (over 250 MiB; the old endpoint grew ~280 MiB). Refusing
        # them first holds only what the transports buffered per connection before pausing reads: 7 MiB on a
        # quiet machine, 57 MiB once seen with the whole suite on 2 cores (more of each burst read in time).
        assert grown < 128, f"RSS grew {grown:.0f} MiB under 300 slow unsigned uploads (from {before / 1024:.0f} MiB)"
        assert served.alive()
        body = json.dumps({"text": "after"}).encode()
        headers = {"Upstash-Signature": served.sign("record", body), "Upstash-Message-Id": "msg_after"}
        async with httpx.AsyncClient() as client:
            response = await client.post(served.url("record"), content=body, headers=headers, timeout=60)
        assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--max-concurrency", "0"], {}, "max_concurrency (JOBWORKER_MAX_CONCURRENCY): must be at least 1"),
        ([], {"JOBWORKER_MAX_CONCURRENCY": "lots"}, "JOBWORKER_MAX_CONCURRENCY: 'lots' is not a valid int"),
        ([], {"JOBWORKER_BODY_TIMEOUT": "soon"}, "body_timeout"),
        (["--body-timeout", "0s"], {}, "body_timeout (JOBWORKER_BODY_TIMEOUT): must be greater than 0"),
        (["--body-timeout", "soon"], {}, "--body-timeout"),
        ([], {"JOBWORKER_REPLAY_DATABASE_URL": "postgresql://u:p@h:notaport/x?sslmode=%zz"}, "REPLAY_DATABASE_URL"),
        (["--replay-timeout", "0"], {}, "replay_timeout (JOBWORKER_REPLAY_TIMEOUT): must be greater than 0"),
    ],
)
def test_bad_bounds_are_one_error_line(args: list[str], env: dict[str, str], message: str) -> None:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBWORKER_", "QSTASH_"))}
    child_env.update(
        PYTHONPATH=str(REPO),
        QSTASH_CURRENT_SIGNING_KEY="sig_current",
        QSTASH_NEXT_SIGNING_KEY="sig_next",
        QSTASH_CALLBACK_URL="https://jobs.example.com",
        **env,
    )
    argv = [sys.executable, "-m", "jobworker", "serve", "--tasks", "tests.endpoint_jobs", "--port", "0", *args]
    result = subprocess.run(argv, env=child_env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert message in line, line
