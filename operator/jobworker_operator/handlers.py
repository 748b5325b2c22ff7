"""kopf handlers: each is a few lines that hand over to ``reconcile.Runtime``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from jobworker_operator import apply, names, queue_stats, reconcile
from jobworker_operator import settings as operator_settings
from jobworker_operator.apply import Api, ApiError

# Children whose events (a hand edit, a deletion, a finished Job, a Deployment becoming available)
# trigger a pass over their pool. Secrets are not watched: the RBAC only allows get on them.
CHILDREN = (
    ("apps", "v1", "deployments"),
    ("batch", "v1", "jobs"),
    ("batch", "v1", "cronjobs"),
    ("", "v1", "configmaps"),
    ("", "v1", "services"),
)
OWNED = {names.LABEL_MANAGED_BY: names.MANAGED_BY}
RETRY_SECONDS = 10


async def _run(memo: Any, namespace: str | None, name: str, *, refresh_stats: bool = False) -> None:
    runtime: reconcile.Runtime = memo.runtime
    assert namespace, "JobWorkerPool is namespaced"
    try:
        await runtime.trigger(namespace, name, refresh_stats=refresh_stats)
    except ApiError as exc:
        raise kopf.TemporaryError(f"Kubernetes API: {exc}", delay=RETRY_SECONDS) from exc


def register(opts: operator_settings.Options, registry: kopf.OperatorRegistry, reader: queue_stats.Reader) -> None:
    """Registers the handlers; the timer interval comes from the command line, hence a function."""
    group, version, plural = names.GROUP, names.VERSION, names.PLURAL

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A private registry gets no default login handlers: in-cluster token first, then KUBECONFIG.
        return apply.login_or_none(kwargs.get("settings") or kopf.OperatorSettings())

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        operator_settings.configure(settings, opts)
        memo.runtime = reconcile.Runtime(
            api=await Api.connect(settings), reader=reader, stats_source=opts.queue_stats_source
        )

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        await memo.runtime.api.close()

    @kopf.on.resume(group, version, plural, registry=registry)
    @kopf.on.create(group, version, plural, registry=registry)
    @kopf.on.update(group, version, plural, registry=registry)
    async def pool_changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
        await _run(memo, namespace, name)

    @kopf.timer(group, version, plural, interval=opts.resync_seconds, initial_delay=1.0, registry=registry)
    async def pool_timer(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
        await _run(memo, namespace, name, refresh_stats=True)

    @kopf.on.delete(group, version, plural, optional=True, registry=registry)
    async def pool_deleted(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
        memo.runtime.forget(namespace or "", name)

    for child_group, child_version, child_plural in CHILDREN:

        @kopf.on.event(
            child_group, child_version, child_plural, labels=OWNED, registry=registry, id=f"child-{child_plural}"
        )
        async def child_event(type: str, namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any) -> None:
            # type None is the initial listing: the resume handler already covers every pool.
            owner = labels.get(names.LABEL_POOL)
            if type is not None and owner:
                await _run(memo, namespace, owner)
