"""An in-memory stand-in for apply.Api: objects keyed by (kind, name) in one namespace, enough for reconcile."""

from __future__ import annotations

import copy
import itertools
from typing import Any

from jobworker_operator import apply, names

Obj = dict[str, Any]


def merge(target: Obj, patch: Obj) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class FakeApi(apply.Api):
    """Just enough of apply.Api: objects keyed by (kind, name) in one namespace."""

    def __init__(self, pool: Obj) -> None:
        self.applied = {}
        self.objects: dict[tuple[str, str], Obj] = {(names.KIND, pool["metadata"]["name"]): pool}
        self.uids = itertools.count(1)
        self.merge_patches: list[tuple[str, Obj]] = []

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Obj | None:
        obj = self.objects.get((kind, name))
        return copy.deepcopy(obj) if obj else None

    async def list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[Obj]:
        return [copy.deepcopy(o) for (k, _), o in self.objects.items() if k == kind]

    async def server_side_apply(self, obj: Obj) -> Obj:
        key = (obj["kind"], obj["metadata"]["name"])
        live = self.objects.get(key)
        if live is None:
            live = {"metadata": {"uid": f"u{next(self.uids)}", "generation": 0, "resourceVersion": "1"}}
        new = copy.deepcopy(obj)
        new["metadata"].update(
            uid=live["metadata"]["uid"],
            generation=live["metadata"]["generation"] + 1,
            resourceVersion=str(int(live["metadata"]["resourceVersion"]) + 1),
        )
        new["status"] = live.get("status", {})
        self.objects[key] = new
        self.applied[new["metadata"]["uid"]] = apply.version_of(new)
        return copy.deepcopy(new)

    async def merge_patch(
        self, api_version: str, kind: str, namespace: str, name: str, patch: Obj, sub: str | None = None
    ) -> Obj:
        self.merge_patches.append((name, patch))
        merge(self.objects[(kind, name)], patch)
        return copy.deepcopy(self.objects[(kind, name)])

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self.objects.pop((kind, name), None)

    async def patch_pool_status(self, namespace: str, name: str, status: Obj) -> None:
        merge(self.objects[(names.KIND, name)].setdefault("status", {}), status)

    async def read_secret(self, namespace: str, name: str, key: str) -> str:
        return "postgresql://fake"

    # test helpers
    def pool(self) -> Obj:
        return self.objects[(names.KIND, "pool")]

    def finish(self, job: str, cond: str = "Complete", reason: str = "", message: str = "") -> None:
        self.objects[("Job", job)]["status"] = {
            "conditions": [{"type": cond, "status": "True", "reason": reason, "message": message}]
        }

    def jobs(self) -> list[str]:
        return sorted(n for k, n in self.objects if k == "Job")

    def deployment(self, name: str) -> Obj:
        return self.objects[("Deployment", name)]


def conditions(api: FakeApi) -> dict[str, str]:
    return {c["type"]: c["status"] for c in api.pool()["status"]["conditions"]}
