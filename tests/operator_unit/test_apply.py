"""apply.Api, the operator's own Kubernetes client, against a local aiohttp server standing in for the API."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import kopf
import pytest
from aiohttp import web

from jobworker_operator import apply, names


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    authorization: str
    body: Any


@dataclass
class FakeServer:
    """Records every request; answers from ``responses`` keyed by (method, path), else 404."""

    url: str = ""
    requests: list[Request] = field(default_factory=list)
    responses: dict[tuple[str, str], list[tuple[int, Any]]] = field(default_factory=dict)

    def answer(self, method: str, path: str, *replies: tuple[int, Any]) -> None:
        self.responses[(method, path)] = list(replies)

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.requests.append(
            Request(
                request.method,
                request.path,
                dict(request.query),
                request.headers.get("Content-Type", ""),
                request.headers.get("Authorization", ""),
                json.loads(raw) if raw else None,
            )
        )
        replies = self.responses.get((request.method, request.path))
        if not replies:
            status, body = 404, {"kind": "Status", "message": f"{request.path} not found", "code": 404}
        else:
            status, body = replies.pop(0) if len(replies) > 1 else replies[0]
        if isinstance(body, str):
            return web.Response(status=status, text=body)
        return web.json_response(body, status=status)


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    fake = FakeServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()


@pytest.fixture
async def api(server: FakeServer) -> AsyncIterator[apply.Api]:
    client = apply.Api(kopf.ConnectionInfo(server=server.url + "/", token="token-1"))
    yield client
    await client.close()


DEPLOYMENTS = "/apis/apps/v1/namespaces/ns/deployments"


async def test_get_returns_the_object_and_none_when_missing(server: FakeServer, api: apply.Api) -> None:
    server.answer("GET", f"{DEPLOYMENTS}/w", (200, {"kind": "Deployment", "metadata": {"name": "w"}}))
    assert await api.get("apps/v1", "Deployment", "ns", "w") == {"kind": "Deployment", "metadata": {"name": "w"}}
    assert await api.get("apps/v1", "Deployment", "ns", "gone") is None
    first = server.requests[0]
    assert first.authorization == "Bearer token-1"
    assert first.content_type == "application/json"


async def test_list_sends_the_label_selector(server: FakeServer, api: apply.Api) -> None:
    server.answer("GET", "/api/v1/namespaces/ns/configmaps", (200, {"items": [{"metadata": {"name": "c"}}]}))
    assert await api.list("v1", "ConfigMap", "ns", "a=b,c=d") == [{"metadata": {"name": "c"}}]
    server.answer("GET", "/api/v1/namespaces/ns/services", (200, {"items": None}))
    assert await api.list("v1", "Service", "ns", "a=b") == []
    assert server.requests[0].query == {"labelSelector": "a=b,c=d"}


async def test_server_side_apply_forces_our_field_manager_and_remembers_the_version(
    server: FakeServer, api: apply.Api
) -> None:
    live = {"metadata": {"name": "w", "uid": "u1", "generation": 4}}
    server.answer("PATCH", f"{DEPLOYMENTS}/w", (200, live))
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "namespace": "ns"}, "spec": {}}
    assert await api.server_side_apply(obj) == live
    sent = server.requests[0]
    assert sent.content_type == "application/apply-patch+yaml"
    assert sent.query == {"fieldManager": names.FIELD_MANAGER, "force": "true"}
    assert sent.body == obj
    assert api.applied == {"u1": "g4"}


async def test_status_merge_patch_and_delete(server: FakeServer, api: apply.Api) -> None:
    pools = f"/apis/{names.API_VERSION}/namespaces/ns/{names.PLURAL}"
    server.answer("PATCH", f"{pools}/p/status", (200, {"status": {"phase": "x"}}))
    server.answer("DELETE", f"{DEPLOYMENTS}/w", (200, {"kind": "Status"}))
    await api.patch_pool_status("ns", "p", {"phase": "x"})
    await api.delete("apps/v1", "Deployment", "ns", "w")
    await api.delete("apps/v1", "Deployment", "ns", "already-gone")  # a 404 is not an error
    patch, delete = server.requests[0], server.requests[1]
    assert (patch.method, patch.content_type, patch.body) == (
        "PATCH",
        "application/merge-patch+json",
        {"status": {"phase": "x"}},
    )
    assert patch.query == {"fieldManager": names.FIELD_MANAGER}
    assert (delete.method, delete.body) == ("DELETE", {"propagationPolicy": "Background"})


async def test_errors_carry_the_status_and_the_api_message(server: FakeServer, api: apply.Api) -> None:
    server.answer("PATCH", f"{DEPLOYMENTS}/w", (403, {"kind": "Status", "message": "namespace ns is being terminated"}))
    server.answer("GET", f"{DEPLOYMENTS}/x", (500, "not json"))
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "namespace": "ns"}}
    with pytest.raises(apply.ApiError) as forbidden:
        await api.server_side_apply(obj)
    assert forbidden.value.status == 403 and apply.namespace_terminating(forbidden.value)
    with pytest.raises(apply.ApiError) as broken:
        await api.get("apps/v1", "Deployment", "ns", "x")
    assert (broken.value.status, str(broken.value)) == (500, "500 Internal Server Error")


async def test_read_secret(server: FakeServer, api: apply.Api) -> None:
    server.answer("GET", "/api/v1/namespaces/ns/secrets/db", (200, {"data": {"url": "cG9zdGdyZXM6Ly94"}}))
    assert await api.read_secret("ns", "db", "url") == "postgres://x"
    with pytest.raises(apply.ApiError) as missing_key:
        await api.read_secret("ns", "db", "other")
    assert missing_key.value.status == 404


async def test_a_401_reads_the_credentials_again_once(
    server: FakeServer, api: apply.Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apply, "login", lambda settings=None: kopf.ConnectionInfo(server=server.url, token="token-2"))
    server.answer("GET", f"{DEPLOYMENTS}/w", (401, {"message": "Unauthorized"}), (200, {"metadata": {"name": "w"}}))
    assert await api.get("apps/v1", "Deployment", "ns", "w") == {"metadata": {"name": "w"}}
    assert [r.authorization for r in server.requests] == ["Bearer token-1", "Bearer token-2"]

    server.answer("GET", f"{DEPLOYMENTS}/v", (401, {"message": "Unauthorized"}))
    with pytest.raises(apply.ApiError) as still:
        await api.get("apps/v1", "Deployment", "ns", "v")
    assert still.value.status == 401


async def test_no_server_is_status_0(api: apply.Api, server: FakeServer) -> None:
    unreachable = apply.Api(kopf.ConnectionInfo(server="http://127.0.0.1:1", token="t"))
    try:
        with pytest.raises(apply.ApiError) as exc:
            await unreachable.get("apps/v1", "Deployment", "ns", "w")
        assert exc.value.status == 0
    finally:
        await unreachable.close()


def test_the_operator_process_does_not_load_kubernetes_asyncio() -> None:
    """kopf would import it when installed (~40 MB of generated models); the operator has its own client."""
    code = "import sys, jobworker_operator.__main__; print(sys.modules.get('kubernetes_asyncio'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "None"
