"""``python -m jobworker_operator [--namespace NS]... [--all-namespaces]`` (contracts.md)."""

from __future__ import annotations

import sys

# kopf imports kubernetes_asyncio whenever it is installed (to recognise its model classes, which the
# operator never hands to kopf): ~40 MB of generated models in the operator's RSS. It is no dependency
# of the operator (apply.py has its own client); where it is installed anyway (the dev extra), keep it out.
sys.modules.setdefault("kubernetes_asyncio", None)  # type: ignore[arg-type]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import logging  # noqa: E402
from collections.abc import Sequence  # noqa: E402

import kopf  # noqa: E402
import prometheus_client  # noqa: E402

from jobworker_operator import handlers, queue_stats, settings  # noqa: E402


def parse_args(argv: Sequence[str] | None = None) -> settings.Options:
    parser = argparse.ArgumentParser(prog="jobworker-operator", description=__doc__)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", action="append", default=[], help="watch this namespace (repeatable)")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace (default)")
    parser.add_argument(
        "--bind-address",
        default=settings.DEFAULT_BIND_ADDRESS,
        help="address of the liveness and metrics servers (default %(default)s)",
    )
    parser.add_argument(
        "--liveness-port",
        type=int,
        default=settings.DEFAULT_LIVENESS_PORT,
        help="GET /healthz port (default %(default)s)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=settings.DEFAULT_METRICS_PORT,
        help="Prometheus /metrics port (default %(default)s)",
    )
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=settings.DEFAULT_RESYNC_SECONDS,
        help="per-pool timer: queue stats, autoscaling, drift repair (default %(default)s)",
    )
    parser.add_argument(
        "--watch-inactivity-timeout",
        type=float,
        default=settings.DEFAULT_WATCH_INACTIVITY_TIMEOUT,
        help="reconnect a watch that has been silent this long (default %(default)s)",
    )
    parser.add_argument(
        "--queue-stats-from",
        choices=settings.QUEUE_STATS_SOURCES,
        default=settings.DEFAULT_QUEUE_STATS_SOURCE,
        help="database: read each graphile pool's database URL Secret and query it (get on Secrets); workers: "
        "ask a ready worker of the pool over its metrics port, and read no Secret (default %(default)s)",
    )
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return settings.Options(
        namespaces=tuple(args.namespace),
        bind_address=args.bind_address,
        liveness_port=args.liveness_port,
        metrics_port=args.metrics_port,
        resync_seconds=args.resync_seconds,
        watch_inactivity_timeout=args.watch_inactivity_timeout,
        queue_stats_source=args.queue_stats_from,
    )


async def run(opts: settings.Options, reader: queue_stats.Reader = queue_stats.worker_utils_reader) -> None:
    queue_stats.install_log_redaction()
    registry = kopf.OperatorRegistry()
    handlers.register(opts, registry, reader)
    prometheus_client.start_http_server(opts.metrics_port, addr=opts.bind_address)
    await kopf.operator(
        registry=registry,
        standalone=True,
        clusterwide=not opts.namespaces,
        namespaces=opts.namespaces,
        liveness_endpoint=opts.liveness_endpoint,
    )


def main(argv: Sequence[str] | None = None) -> None:
    asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    main()
