"""Status codes QStash acts on, against ``jobworker serve`` as a process: a body that retrying cannot fix
gets 489 + ``Upstash-NonRetryable-Error``; a malformed signature gets 401, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.serve_process import Served, serve


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with serve("--max-body-bytes", "5000") as s:
        yield s


def post(served: Served, name: str, body: bytes, token: str | None) -> httpx.Response:
    headers = {"Upstash-Message-Id": "msg_status"}
    if token is not None:
        headers["Upstash-Signature"] = token
    return httpx.post(f"{served.base}/v1/jobs/run/{name}", content=body, headers=headers, timeout=30)


def test_an_oversize_body_is_not_retryable(served: Served) -> None:
    big = json.dumps({"text": "x" * 6000}).encode()
    response = post(served, "record", big, served.sign("record", big))
    assert (response.status_code, response.headers.get("Upstash-NonRetryable-Error")) == (489, "true")
    assert response.json()["error"]["code"] == "jobs.body_too_large"
    assert served.calls() == []


@pytest.mark.parametrize("claim", ["é" * 43, "\u2603", "ü="])
def test_a_non_ascii_body_claim_is_401_not_500(served: Served, claim: str) -> None:
    body = b'{"text": "hi"}'
    response = post(served, "record", body, served.sign("record", body, body=claim))
    assert response.status_code == 401, response.text
    assert "body hash does not match" in response.json()["error"]["message"]
    assert served.calls() == []


def test_a_non_string_body_claim_is_401(served: Served) -> None:
    body = b'{"text": "hi"}'
    response = post(served, "record", body, served.sign("record", body, body=12345))
    assert response.status_code == 401 and "'body' claim is not a string" in response.json()["error"]["message"]


def test_deeply_nested_signed_json_is_not_retryable(served: Served) -> None:
    body = b'{"text": "x", "deep": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    assert len(body) < 5000
    response = post(served, "record", body, served.sign("record", body))
    assert (response.status_code, response.headers.get("Upstash-NonRetryable-Error")) == (489, "true"), response.text
    assert response.json()["error"]["code"] == "jobs.invalid_payload"
    assert served.calls() == []
