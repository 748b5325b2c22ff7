"""Job providers behind the JobQueue port: ``graphile`` (PostgreSQL), ``qstash`` (Upstash HTTP) and ``noop``.

Pick one with ``JOBS_PROVIDER`` and build it with ``jobworker.queue.build_queue`` / ``build_runtime``.
"""

from __future__ import annotations

from jobworker.providers.noop import NoopJobQueue, enqueue_or_skip

__all__ = ["NoopJobQueue", "enqueue_or_skip"]
