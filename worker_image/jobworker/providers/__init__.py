"""Job providers behind the JobQueue port (``jobworker.queue``): ``graphile`` (PostgreSQL), ``qstash``
(Upstash HTTP) and ``noop``. ``build_queue`` and ``build_runtime`` pick one by ``JOBS_PROVIDER``.

Each adapter is imported only when picked: qstash needs its extra, and graphile brings the worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobworker.config import JobsConfig
from jobworker.providers.noop import NoopJobQueue, enqueue_or_skip

if TYPE_CHECKING:
    from jobworker.queue import JobQueue, Runtime
    from jobworker.registry import JobRegistry

__all__ = ["NoopJobQueue", "build_queue", "build_runtime", "enqueue_or_skip"]


def build_queue(config: JobsConfig | None = None) -> JobQueue:
    """The JobQueue for ``config.provider`` (default: from the environment, ``JOBS_PROVIDER``; unset is noop)."""
    config = config or JobsConfig.from_env()
    if config.provider == "graphile":
        from jobworker.providers.graphile import GraphileJobQueue

        return GraphileJobQueue(config.database_url, config.schema)
    if config.provider == "qstash":
        from jobworker.providers.qstash import QStashJobQueue

        return QStashJobQueue(config.qstash)
    return NoopJobQueue()


def build_runtime(
    config: JobsConfig | None,
    registry: JobRegistry,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
) -> Runtime | None:
    """What runs the jobs of ``registry``: a Worker (graphile), the HTTP endpoint served on ``host:port``
    (qstash), or None (noop: nothing runs)."""
    config = config or JobsConfig.from_env()
    if config.provider == "graphile":
        from jobworker.providers import graphile

        return graphile.build_runtime(config, registry)
    if config.provider == "qstash":
        from jobworker import endpoint

        return endpoint.EndpointRuntime(endpoint.create_app(registry, config.qstash), host=host, port=port)
    return None
