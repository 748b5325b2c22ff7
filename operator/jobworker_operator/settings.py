"""Operator options (CLI) and the kopf settings derived from them."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import kopf

from jobworker_operator import names

DEFAULT_BIND_ADDRESS = "0.0.0.0"
DEFAULT_LIVENESS_PORT = 8080
DEFAULT_METRICS_PORT = 9000
DEFAULT_RESYNC_SECONDS = 30.0
DEFAULT_WATCH_INACTIVITY_TIMEOUT = 70.0
QUEUE_STATS_SOURCES = ("database", "workers")
DEFAULT_QUEUE_STATS_SOURCE = "database"
# An int: kopf passes it verbatim as timeoutSeconds, which the API server parses as an integer.
DEFAULT_WATCH_SERVER_TIMEOUT = 300


@dataclass(frozen=True)
class Options:
    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    bind_address: str = DEFAULT_BIND_ADDRESS
    liveness_port: int = DEFAULT_LIVENESS_PORT
    metrics_port: int = DEFAULT_METRICS_PORT
    # Period of the per-pool timer: queue stats, autoscaling and drift correction.
    resync_seconds: float = DEFAULT_RESYNC_SECONDS
    watch_inactivity_timeout: float = DEFAULT_WATCH_INACTIVITY_TIMEOUT
    # "database" (read each pool's database URL Secret) or "workers" (no Secrets: ask the pool's workers).
    queue_stats_source: str = DEFAULT_QUEUE_STATS_SOURCE

    @property
    def liveness_endpoint(self) -> str:
        return f"http://{self.bind_address}:{self.liveness_port}/healthz"


def configure(settings: kopf.OperatorSettings, opts: Options) -> None:
    prefix = names.PERSISTENCE_PREFIX
    settings.persistence.finalizer = f"{prefix}/finalizer"
    # Annotations, not status: status belongs to the operator's own fields and the CRD schema.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=prefix, key="last-handled-configuration"
    )
    settings.watching.inactivity_timeout = opts.watch_inactivity_timeout
    # Bounded watch requests: a silently dropped connection is noticed and re-established.
    settings.watching.server_timeout = DEFAULT_WATCH_SERVER_TIMEOUT
    settings.watching.client_timeout = DEFAULT_WATCH_SERVER_TIMEOUT + 30
    settings.watching.connect_timeout = 10
    # Only problems become Kubernetes Events; routine handler success would flood them.
    settings.posting.level = logging.WARNING
    settings.peering.standalone = True
