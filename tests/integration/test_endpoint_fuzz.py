"""Property-based tests of the job endpoint, against ``jobworker serve`` as a process: JWT headers and claims
mutated (alg, kid, sub variants, iss, exp/nbf around the tolerance, the body hash with and without padding,
jti), arbitrary tokens, bodies and unsigned headers. The endpoint answers each with a status QStash acts on,
runs the handler only for a fully valid signature, and never answers 500, logs a traceback or dies. The ASGI
adapter, which shares the Receiver, is fuzzed the same way in process."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobworker.config import QStashConfig
from jobworker.endpoint import asgi_app
from tests import endpoint_jobs
from tests.serve_process import CURRENT, NEXT, Served, serve

EXPECTED = {200, 401, 408, 409, 489, 503}
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with serve("--max-body-bytes", "4096") as s:
        yield s


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as c:
        yield c


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def token(header: dict[str, Any], claims: dict[str, Any], key: str) -> str:
    """An HS256-signed JWT over any header and claims (PyJWT would refuse to make most of these)."""
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    mac = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(mac)


def sub_variant(url: str, kind: str) -> str:
    scheme, rest = url.split("://", 1)
    host, path = rest.split("/", 1)
    return {
        "exact": url,
        "trailing_slash": url + "/",
        "upper": url.upper(),
        "upper_path": f"{scheme}://{host}/{path.upper()}",
        "encoded_slash": f"{scheme}://{host}/{path.replace('/', '%2F')}",
        "port_443": f"{scheme}://{host.split(':')[0]}:443/{path}",
        "query": url + "?x=1",
        "fragment": url + "#f",
        "https": "https://" + rest,
        "other_job": url.rsplit("/", 1)[0] + "/hold",
        "double_slash": f"{scheme}://{host}//{path}",
    }[kind]


JOB_BODIES = st.one_of(
    st.just(b'{"text": "fuzz"}'),
    st.builds(lambda t: json.dumps({"text": t}).encode(), st.text(max_size=40)),
    st.binary(max_size=64),
    st.just(b"[" * 2000 + b"]" * 2000),  # deeper than json.loads can go
    st.just(b"x" * 5000),  # over --max-body-bytes
)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[dict[str, Any], bytes, bool]:
    """(request headers, body, whether the request is fully valid)."""
    body = draw(JOB_BODIES)
    now = time.time()
    valid = True

    alg = draw(st.sampled_from(["HS256", "HS256", "none", "HS512", "RS256", "hs256", ""]))
    valid &= alg == "HS256"
    header: dict[str, Any] = {"alg": alg, "typ": draw(st.sampled_from(["JWT", "jwt", None]))}
    if draw(st.booleans()):
        header["kid"] = draw(st.one_of(st.text(max_size=20), st.integers(), st.none(), st.lists(st.integers())))
        valid &= isinstance(header["kid"], str) or header["kid"] is None  # PyJWT requires a string kid

    sub_kind = draw(
        st.sampled_from(["exact", "exact", "trailing_slash", "upper", "upper_path", "encoded_slash", "port_443"])
        | st.sampled_from(["query", "fragment", "https", "other_job", "double_slash"])
    )
    valid &= sub_kind == "exact"

    iss = draw(st.sampled_from(["Upstash", "Upstash", "Upstas", "upstash", "Upstash ", "UpstashX", None]))
    valid &= iss == "Upstash"

    exp_kind = draw(st.sampled_from(["ok", "ok", "just_expired_within_tolerance", "expired", "inf", "huge", "text"]))
    exp: Any = {
        "ok": now + 300,
        "just_expired_within_tolerance": now - 1,
        "expired": now - 10,
        "inf": float("inf"),
        "huge": 10**30,
        "text": "tomorrow",
    }[exp_kind]
    valid &= exp_kind in ("ok", "just_expired_within_tolerance", "huge")
    nbf_kind = draw(st.sampled_from(["ok", "ok", "soon_within_tolerance", "future", "negative", "nan", "missing"]))
    nbf: Any = {
        "ok": now - 1,
        "soon_within_tolerance": now + 1,
        "future": now + 60,
        "negative": -(10**12),
        "nan": float("nan"),
        "missing": None,
    }[nbf_kind]
    valid &= nbf_kind in ("ok", "soon_within_tolerance", "negative")

    digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode()
    body_kind = draw(st.sampled_from(["padded", "unpadded", "wrong", "non_ascii", "number", "missing"]))
    body_claim: Any = {
        "padded": digest,
        "unpadded": digest.rstrip("="),
        "wrong": base64.urlsafe_b64encode(hashlib.sha256(body + b"x").digest()).decode(),
        "non_ascii": "é" + digest[1:],
        "number": 12345,
        "missing": None,
    }[body_kind]
    valid &= body_kind in ("padded", "unpadded")

    jti: Any = draw(st.sampled_from(["fresh", "fresh", "empty", "number", "missing"]))
    valid &= jti == "fresh"
    jti = {"fresh": "jwt_" + secrets.token_hex(12), "empty": "", "number": 42, "missing": None}[jti]

    key = draw(st.sampled_from([CURRENT, NEXT, "sig_wrong_" + "w" * 26]))
    valid &= key in (CURRENT, NEXT)

    claims = {"iss": iss, "sub": sub_kind, "exp": exp, "nbf": nbf, "iat": int(now), "jti": jti, "body": body_claim}
    claims = {k: v for k, v in claims.items() if v is not None}
    header = {k: v for k, v in header.items() if v is not None}

    headers: dict[str, Any] = {
        "Upstash-Message-Id": draw(
            st.text(st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=30).map(str.strip)
        )
    }
    if draw(st.booleans()):
        headers["Upstash-Retried"] = draw(st.sampled_from(["0", "1", "-5", "99999999999999999999", "x", ""]))
    if draw(st.booleans()):
        headers["Jobworker-Max-Attempts"] = draw(st.sampled_from(["0", "1", "3", "-1", "1e9", "three"]))
    if draw(st.booleans()):
        headers["Jobworker-Job-Key"] = draw(st.sampled_from(["%", "%zz", "%C3%BC", "a%2Fb", "plain"]))
    # Accepted outcomes also depend on the body: only a small JSON object for "record" can give 200.
    return {"_header": header, "_claims": claims, "_key": key, **headers}, body, valid


def signed_headers(url: str, request: dict[str, Any]) -> dict[str, Any]:
    headers = {k: v for k, v in request.items() if not k.startswith("_")}
    claims = dict(request["_claims"])
    if "sub" in claims:
        claims["sub"] = sub_variant(url, claims["sub"])
    headers["Upstash-Signature"] = token(request["_header"], claims, request["_key"])
    return headers


def send(served: Served, client: httpx.Client, request: dict[str, Any], body: bytes) -> httpx.Response:
    return client.post(served.url("record"), content=body, headers=signed_headers(served.url("record"), request))


def check(served: Served, response: httpx.Response) -> None:
    assert response.status_code in EXPECTED, (response.status_code, response.text)
    if response.status_code != 200:
        assert response.json()["error"]["code"].startswith("jobs."), response.text
    assert served.alive()


@FUZZ
@given(delivery=deliveries())
def test_mutated_signatures_never_500_and_run_only_when_valid(
    served: Served, client: httpx.Client, delivery: tuple[dict[str, Any], bytes, bool]
) -> None:
    request, body, valid = delivery
    before = len(served.calls())
    response = send(served, client, request, body)
    check(served, response)
    if not valid:
        assert response.status_code != 200, (request, body)
        assert response.status_code not in (408, 409)
    ran = len(served.calls()) - before
    assert ran == (1 if response.status_code == 200 else 0)
    if response.status_code == 200:
        assert valid


@FUZZ
@given(
    raw=st.one_of(
        st.text(st.characters(codec="latin-1", exclude_categories=["Cc"]), max_size=200),
        st.builds(
            lambda parts: ".".join(parts),
            st.lists(st.text(st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=40), max_size=5),
        ),
        st.builds(
            lambda h, c: b64(h) + "." + b64(c) + ".",
            st.binary(max_size=40),
            st.binary(max_size=80),
        ),
    ),
    body=st.binary(max_size=200),
)
def test_arbitrary_tokens_get_401(served: Served, client: httpx.Client, raw: str, body: bytes) -> None:
    before = len(served.calls())
    headers = {"Upstash-Signature": raw.strip().encode("latin-1")}
    response = client.post(served.url("record"), content=body, headers=headers)
    check(served, response)
    assert response.status_code == 401, response.text
    assert len(served.calls()) == before


@pytest.fixture(scope="module")
def asgi_calls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    calls = tmp_path_factory.mktemp("asgi") / "calls.jsonl"
    calls.touch()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENDPOINT_TEST_CALLS", str(calls))  # the handlers run in this process here
        yield calls


ASGI_BASE = "https://api.example.com/jobs"
ASGI_APP = asgi_app(
    endpoint_jobs.registry,
    QStashConfig(current_signing_key=CURRENT, next_signing_key=NEXT, callback_url=ASGI_BASE),
    max_body_bytes=4096,
)


@FUZZ
@given(delivery=deliveries())
def test_the_asgi_adapter_answers_the_same_way(asgi_calls: Path, delivery: tuple[dict[str, Any], bytes, bool]) -> None:
    request, body, valid = delivery
    url = ASGI_BASE + "/v1/jobs/run/record"

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=ASGI_APP, root_path="/jobs")
        async with httpx.AsyncClient(transport=transport, base_url="https://api.example.com") as client:
            return await client.post("/jobs/v1/jobs/run/record", content=body, headers=signed_headers(url, request))

    before = len(asgi_calls.read_text().splitlines())
    response = asyncio.run(post())
    assert response.status_code in EXPECTED, (response.status_code, response.text)
    ran = len(asgi_calls.read_text().splitlines()) - before
    assert ran == (1 if response.status_code == 200 else 0)
    assert valid or response.status_code != 200
