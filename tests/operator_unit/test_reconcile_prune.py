"""Pruning deletes only what the pool owns (ownerReferences uid), never what merely carries its labels."""

from __future__ import annotations

import copy
from typing import Any

from jobworker_operator import names, reconcile
from tests.operator_unit.fake_api import FakeApi
from tests.operator_unit.helpers import body

Obj = dict[str, Any]


async def no_stats(url: str, schema: str) -> None:
    raise AssertionError("no queue stats in these tests")


class EventApi(FakeApi):
    def __init__(self, pool: Obj) -> None:
        super().__init__(pool)
        self.events: list[tuple[str, str]] = []

    async def post_event(self, regarding: Obj, reason: str, message: str, *, type_: str = "Warning") -> None:
        self.events.append((reason, message))


def labelled(kind: str, name: str, owners: list[Obj]) -> Obj:
    return {
        "apiVersion": "apps/v1" if kind == "Deployment" else "v1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-of-{name}",
            "labels": names.labels("pool", names.SCHEDULER),
            "ownerReferences": owners,
        },
        "spec": {},
    }


async def test_objects_with_the_pools_labels_but_another_owner_are_left_alone_with_an_event() -> None:
    api = EventApi(body(name="pool", migration={"enabled": False}))
    rt = reconcile.Runtime(api=api, reader=no_stats)
    await rt.trigger("ns", "pool")
    assert ("Deployment", "pool-scheduler") in api.objects

    # Someone's own objects that copied the labels: none owned, one owned by another pool of the same name.
    other = {"apiVersion": names.API_VERSION, "kind": names.KIND, "name": "pool", "uid": "uid-of-an-older-pool"}
    api.objects[("Deployment", "hand-made")] = labelled("Deployment", "hand-made", [])
    api.objects[("ConfigMap", "older")] = labelled("ConfigMap", "older", [other])
    # The pool stops wanting its scheduler: its own Deployment goes, the look-alikes stay.
    api.pool()["spec"]["scheduler"] = {"enabled": False}
    api.pool()["metadata"]["generation"] += 1
    await rt.trigger("ns", "pool")
    await rt.trigger("ns", "pool")

    assert ("Deployment", "pool-scheduler") not in api.objects
    assert ("Deployment", "hand-made") in api.objects
    assert ("ConfigMap", "older") in api.objects
    reported = sorted(message.split(" carries")[0] for reason, message in api.events if reason == "NotOwned")
    assert reported == ["ConfigMap older", "Deployment hand-made"]  # once each, over two passes
    assert all("leaves it alone" in message for _, message in api.events)


async def test_a_foreign_deployment_does_not_count_as_the_pools_workload() -> None:
    api = EventApi(body(name="pool", migration={"enabled": False}, scheduler={"enabled": False}))
    rt = reconcile.Runtime(api=api, reader=no_stats)
    await rt.trigger("ns", "pool")
    deployment = copy.deepcopy(api.deployment("pool-worker"))
    deployment["metadata"].update(name="lookalike", uid="uid-lookalike", ownerReferences=[])
    api.objects[("Deployment", "lookalike")] = deployment
    await rt.trigger("ns", "pool")
    assert ("Deployment", "lookalike") in api.objects
    assert [reason for reason, _ in api.events] == ["NotOwned"]
