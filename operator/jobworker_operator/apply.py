"""The only module that talks to the Kubernetes API (besides kopf itself).

Children are written with server-side apply under one field manager, with a spec-hash annotation: an
unchanged child whose generation (or resourceVersion) is still the one our last apply produced is not
sent again, and anything else — a new render, a hand edit, an operator restart — is re-applied. A
re-apply of identical content is a no-op in the API server, so restarts adopt children without churn.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import os
from datetime import UTC, datetime
from typing import Any

import aiohttp
import kopf

from jobworker_operator import names

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[str, str]  # (kind, name)

PLURALS = {
    "ConfigMap": "configmaps",
    "Service": "services",
    "Secret": "secrets",
    "Deployment": "deployments",
    "Job": "jobs",
    "CronJob": "cronjobs",
    "ServiceMonitor": "servicemonitors",
    "EndpointSlice": "endpointslices",
    names.KIND: names.PLURAL,
}
# Kinds the operator lists to find its children (ServiceMonitors: the RBAC has no list, see prune()).
LISTED_KINDS = (
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("batch/v1", "CronJob"),
    ("batch/v1", "Job"),
)
TIMEOUT = 30
USER_AGENT = "jobworker-operator"
# Concurrent connections to the API server; more requests wait for a free one. Every TLS connection
# costs ~320 KiB (asyncio's SSL buffer is 256 KiB), so 100 pools reconciling at once must not open 100.
CONNECTIONS = 8


class ApiError(Exception):
    """A Kubernetes API call failed; ``status`` is the HTTP status (0 when no response)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def namespace_terminating(exc: ApiError) -> bool:
    """Creating in a namespace that is being deleted: expected while it tears down, not a problem."""
    return exc.status == 403 and "being terminated" in str(exc)


def path(api_version: str, kind: str, namespace: str, name: str | None = None, sub: str | None = None) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    out = f"{base}/namespaces/{namespace}/{PLURALS[kind]}"
    if name:
        out += f"/{name}"
    if sub:
        out += f"/{sub}"
    return out


def spec_hash(obj: Obj) -> str:
    return names.digest(obj)


def version_of(obj: Obj) -> str:
    """Spec version: generation where the kind has one (status updates don't bump it)."""
    meta = obj.get("metadata", {})
    return f"g{meta['generation']}" if meta.get("generation") else f"r{meta.get('resourceVersion', '')}"


def login(settings: kopf.OperatorSettings | None = None) -> kopf.ConnectionInfo:
    """The credentials kopf logs in with (see handlers.login): in-cluster token first, then KUBECONFIG."""
    info = login_or_none(settings or kopf.OperatorSettings())
    if info is None:
        raise kopf.LoginError("no ServiceAccount token and no kubeconfig (KUBECONFIG or ~/.kube/config)")
    return info


def login_or_none(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo | None:
    """In-cluster: the ServiceAccount token, at the address in KUBERNETES_SERVICE_HOST/PORT as client-go's
    InClusterConfig uses it. kopf's own default names https://kubernetes.default.svc, which needs cluster
    DNS: without it (a cluster with no CoreDNS) the operator could never log in. Else KUBECONFIG."""
    info = kopf.login_with_service_account(settings=settings)
    if info is not None:
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
        if host and port:
            host = f"[{host}]" if ":" in host else host  # an IPv6 service address
            info = dataclasses.replace(info, server=f"https://{host}:{port}")
        return info
    return kopf.login_with_kubeconfig(settings=settings)


class Api:
    """A thin JSON client on aiohttp for the handful of calls the operator makes (no generated models)."""

    def __init__(self, info: kopf.ConnectionInfo, settings: kopf.OperatorSettings | None = None) -> None:
        self.settings = settings
        self.server = info.server.rstrip("/")
        self.headers = info.as_http_headers()
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=info.as_ssl_context(), limit=CONNECTIONS),
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            proxy=info.proxy_url,
            trust_env=info.trust_env,
            timeout=aiohttp.ClientTimeout(total=TIMEOUT),
        )
        self.applied: dict[str, str] = {}  # uid -> version_of() right after our last apply
        self._relogin = asyncio.Lock()

    @classmethod
    async def connect(cls, settings: kopf.OperatorSettings | None = None) -> Api:
        return cls(login(settings), settings)

    async def close(self) -> None:
        await self.session.close()

    async def _refresh_credentials(self, sent: dict[str, str]) -> None:
        """After a 401: read the token again (a rotated ServiceAccount token, a rewritten kubeconfig)."""
        async with self._relogin:
            if self.headers is not sent:
                return  # refreshed meanwhile by a concurrent call
            try:
                self.headers = login(self.settings).as_http_headers()
            except Exception as exc:  # the retry then fails with the 401 it got
                log.warning("cannot refresh the Kubernetes credentials: %s", exc)

    async def call(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        data = None if body is None else json.dumps(body)
        for attempt in range(2):
            headers = self.headers
            try:
                async with self.session.request(
                    method,
                    self.server + url,
                    params=query,
                    data=data,
                    headers={**headers, "Content-Type": content_type},
                ) as resp:
                    raw = await resp.read()
                    status, reason = resp.status, resp.reason
            except (aiohttp.ClientError, OSError) as exc:  # TimeoutError is an OSError
                raise ApiError(0, f"{method} {url}: {exc or type(exc).__name__}") from exc
            if status == 401 and attempt == 0:
                await self._refresh_credentials(headers)
                continue
            if not 200 <= status <= 299:
                raise ApiError(status, _message(raw, status, reason))
            break
        result = json.loads(raw) if raw else {}
        return dict(result) if isinstance(result, dict) else {}

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Obj | None:
        try:
            return await self.call("GET", path(api_version, kind, namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[Obj]:
        out = await self.call("GET", path(api_version, kind, namespace), query=[("labelSelector", selector)])
        items: list[Obj] = out.get("items") or []
        return items

    async def server_side_apply(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        url = path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        query = [("fieldManager", names.FIELD_MANAGER), ("force", "true")]
        live = await self.call("PATCH", url, body=obj, query=query, content_type="application/apply-patch+yaml")
        self.applied[live["metadata"]["uid"]] = version_of(live)
        return live

    async def merge_patch(
        self, api_version: str, kind: str, namespace: str, name: str, patch: Obj, sub: str | None = None
    ) -> Obj:
        url = path(api_version, kind, namespace, name, sub)
        return await self.call(
            "PATCH",
            url,
            body=patch,
            query=[("fieldManager", names.FIELD_MANAGER)],
            content_type="application/merge-patch+json",
        )

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        try:
            await self.call(
                "DELETE", path(api_version, kind, namespace, name), body={"propagationPolicy": "Background"}
            )
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def get_pool(self, namespace: str, name: str) -> Obj | None:
        return await self.get(names.API_VERSION, names.KIND, namespace, name)

    async def patch_pool_status(self, namespace: str, name: str, status: Obj) -> None:
        await self.merge_patch(names.API_VERSION, names.KIND, namespace, name, {"status": status}, sub="status")

    async def post_event(self, regarding: Obj, reason: str, message: str, *, type_: str = "Warning") -> None:
        """A core/v1 Event on ``regarding`` (shown by ``kubectl describe``); a failure is only logged."""
        meta = regarding["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": regarding.get("apiVersion", names.API_VERSION),
                "kind": regarding.get("kind", names.KIND),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid", ""),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": names.FIELD_MANAGER},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.call("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body=event)
        except ApiError as exc:
            log.warning("cannot post event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], exc)

    async def read_secret(self, namespace: str, name: str, key: str) -> str:
        secret = await self.get("v1", "Secret", namespace, name)
        if secret is None:
            raise ApiError(404, f"Secret {namespace}/{name} not found")
        raw = (secret.get("data") or {}).get(key)
        if raw is None:
            raise ApiError(404, f"Secret {namespace}/{name} has no key {key!r}")
        try:
            return base64.b64decode(raw).decode()
        except ValueError:  # binascii.Error and UnicodeDecodeError; neither message may quote the value
            raise ApiError(
                422, f"Secret {namespace}/{name} key {key!r} is not UTF-8 text: store the database URL as plain text"
            ) from None


def _message(raw: bytes, status: int, reason: str | None) -> str:
    try:
        return str(json.loads(raw)["message"])
    except (TypeError, ValueError, KeyError):
        return f"{status} {reason}"


async def live_children(api: Api, namespace: str, pool: str) -> dict[Key, Obj]:
    selector = f"{names.LABEL_POOL}={pool},{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"
    out: dict[Key, Obj] = {}
    for api_version, kind in LISTED_KINDS:
        for item in await api.list(api_version, kind, namespace, selector):
            # Jobs spawned by our CronJobs carry our labels too; they belong to the CronJob.
            owners = item.get("metadata", {}).get("ownerReferences") or []
            if any(o.get("kind") == "CronJob" for o in owners):
                continue
            out[(kind, item["metadata"]["name"])] = {"apiVersion": api_version, "kind": kind, **item}
    return out


async def sync(api: Api, desired: list[Obj], live: dict[Key, Obj]) -> tuple[dict[Key, Obj], list[str]]:
    """Apply every desired child that is new, changed or drifted; returns (live after, problems)."""
    after, problems = dict(live), []
    for obj in desired:
        key = (obj["kind"], obj["metadata"]["name"])
        current = live.get(key)
        if obj["kind"] == "Job" and current is not None:
            continue  # Job specs are immutable; a new spec gets a new name (digest in the name).
        digest = spec_hash(obj)
        if current is not None and not _needs_apply(api, current, digest):
            continue
        annotated = {
            **obj,
            "metadata": {
                **obj["metadata"],
                "annotations": {**obj["metadata"].get("annotations", {}), names.ANNOTATION_SPEC_HASH: digest},
            },
        }
        log.info(
            "applying %s %s/%s (%s)",
            obj["kind"],
            obj["metadata"]["namespace"],
            obj["metadata"]["name"],
            "new" if current is None else "changed or drifted",
        )
        try:
            after[key] = await api.server_side_apply(annotated)
        except ApiError as exc:
            if not namespace_terminating(exc):
                problems.append(f"applying {obj['kind']} {obj['metadata']['name']}: {exc}")
    return after, problems


def _needs_apply(api: Api, current: Obj, digest: str) -> bool:
    meta = current.get("metadata", {})
    if (meta.get("annotations") or {}).get(names.ANNOTATION_SPEC_HASH) != digest:
        return True
    return api.applied.get(meta.get("uid", "")) != version_of(current)


def owned_by(obj: Obj, uid: str) -> bool:
    """Whether ``obj`` names the pool with ``uid`` among its owners (labels alone prove nothing)."""
    return any(o.get("uid") == uid for o in obj.get("metadata", {}).get("ownerReferences") or [])


def split_owned(live: dict[Key, Obj], uid: str) -> tuple[dict[Key, Obj], dict[Key, Obj]]:
    """(children the pool owns, objects that only carry its labels)."""
    owned = {k: v for k, v in live.items() if owned_by(v, uid)}
    return owned, {k: v for k, v in live.items() if k not in owned}


async def prune(
    api: Api, live: dict[Key, Obj], keep: set[Key], namespace: str, *, owner_uid: str, monitor: str | None
) -> list[Key]:
    """Delete children the pool no longer wants (scheduler disabled, provider changed, old Jobs).

    Only objects whose ownerReferences name the pool's uid are deleted; the others are returned.
    """
    left_alone: list[Key] = []
    for (kind, name), obj in live.items():
        if (kind, name) in keep:
            continue
        if not owned_by(obj, owner_uid):
            left_alone.append((kind, name))
            continue
        log.info("deleting %s %s/%s: no longer part of the pool", kind, namespace, name)
        await api.delete(obj["apiVersion"], kind, namespace, name)
        api.applied.pop(obj.get("metadata", {}).get("uid", ""), None)
    if monitor is not None:
        # No list verb on ServiceMonitors: look it up by name; a missing CRD or object is a 404 (None).
        found = await _get_if_served(api, "monitoring.coreos.com/v1", "ServiceMonitor", namespace, monitor)
        if found is not None and owned_by(found, owner_uid):
            await api.delete("monitoring.coreos.com/v1", "ServiceMonitor", namespace, monitor)
        elif found is not None:
            left_alone.append(("ServiceMonitor", monitor))
    return left_alone


async def _get_if_served(api: Api, api_version: str, kind: str, namespace: str, name: str) -> Obj | None:
    try:
        return await api.get(api_version, kind, namespace, name)
    except ApiError as exc:
        if exc.status == 403:  # RBAC without the prometheus-operator rule: nothing of ours can be there
            return None
        raise
