"""The qstash provider (extra ``jobworker[qstash]``): publish jobs to Upstash QStash, which calls the
HTTP job endpoint (``jobworker serve``) back at ``{QSTASH_CALLBACK_URL}/v1/jobs/run/<name>``.

How the JobQueue options map (see /docs and the QStash protocol notes):

* ``run_at`` → ``Upstash-Not-Before``; ``max_attempts`` → ``Upstash-Retries`` (max_attempts - 1);
* ``Upstash-Deduplication-Id`` is ALWAYS set, because the SDK retries network errors and could publish
  twice. Without a ``job_key`` it is fresh for each ``enqueue`` call (the SDK's own retries of that call
  reuse it), so two identical enqueues are two jobs, as under graphile. With a ``job_key`` it is derived
  from the key alone (the key itself when it is header-safe, else a hash of it);
* QStash deduplicates for about 10 minutes and keeps the FIRST message: it cannot replace a waiting
  message. So ``job_key_mode`` ``replace`` and ``preserve_run_at`` raise ConfigurationError (pass
  ``unsafe_dedupe`` to accept first-wins), and a keyed enqueue left at the default mode logs a warning
  when QStash dropped its payload as a duplicate;
* ``queue`` → a QStash queue (FIFO, one at a time), which cannot be combined with ``run_at``;
* ``priority`` and ``flags`` have no QStash equivalent and are ignored.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import re
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from jobworker import errors
from jobworker.config import QStashConfig
from jobworker.crontab import ScheduleEntry
from jobworker.endpoint import JOB_KEY_HEADER, MAX_ATTEMPTS_HEADER, check_callback_url, encode_header
from jobworker.jobs import DEFAULT_MAX_ATTEMPTS, JobDefinition, JobKeyMode
from jobworker.queue import EnqueuedJob
from jobworker.registry import JobRegistry, load_registry

if TYPE_CHECKING:
    from qstash import AsyncQStash

P = TypeVar("P")
log = logging.getLogger("jobworker.providers.qstash")
SCHEDULE_ID_PREFIX = "jobworker-"
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_.:\-]")


def _client(config: QStashConfig) -> AsyncQStash:
    try:
        from qstash import AsyncQStash
    except ImportError:
        raise errors.ConfigurationError(
            "JOBS_PROVIDER=qstash needs the qstash SDK: pip install 'jobworker[qstash]'"
        ) from None
    return AsyncQStash(config.token, base_url=config.url)


def deduplication_id(job_key: str | None = None) -> str:
    """For a key: the key when it is header-safe, else a hash of the key alone. Without one: a fresh id."""
    if job_key is None:
        return "jw-" + uuid.uuid4().hex
    if not _UNSAFE_ID.search(job_key):
        return job_key
    return "jwk-" + hashlib.sha256(job_key.encode("utf-8", "surrogatepass")).hexdigest()


def _key_mode(job_key: str | None, job_key_mode: JobKeyMode | str | None, job_name: str) -> JobKeyMode | None:
    if job_key_mode is None:
        return None
    try:
        mode = JobKeyMode(job_key_mode)
    except ValueError:
        allowed = ", ".join(m.value for m in JobKeyMode)
        raise errors.ConfigurationError(f"job_key_mode: {job_key_mode!r} is not one of {allowed}") from None
    if job_key is not None and mode is not JobKeyMode.UNSAFE_DEDUPE:
        raise errors.ConfigurationError(
            f"job {job_name!r}: job_key_mode {mode.value!r} asks to replace a waiting job, which QStash cannot do "
            "(it keeps the first message with a deduplication id for about 10 minutes); pass "
            "job_key_mode='unsafe_dedupe' to accept that, or use the graphile provider"
        )
    return mode


class QStashJobQueue:
    """Publish jobs with the official SDK (``AsyncQStash``)."""

    provider = "qstash"

    def __init__(self, config: QStashConfig | None = None, *, client: AsyncQStash | None = None) -> None:
        self.config = config or QStashConfig.from_env(receive=False)
        check_callback_url(self.config.callback_url)
        self.client = client or _client(self.config)

    async def enqueue(
        self,
        job: JobDefinition[P],
        payload: P,
        *,
        run_at: datetime | None = None,
        job_key: str | None = None,
        job_key_mode: JobKeyMode | str | None = None,
        max_attempts: int | None = None,
        queue: str | None = None,
        priority: int | None = None,
        flags: Sequence[str] | None = None,
    ) -> EnqueuedJob:
        if run_at is not None and run_at.tzinfo is None:
            raise errors.ConfigurationError("run_at: must be timezone-aware (for example datetime.now(UTC))")
        mode = _key_mode(job_key, job_key_mode, job.name)
        body = job.dump(payload)
        attempts = max_attempts if max_attempts is not None else job.max_attempts
        queue = queue if queue is not None else job.queue
        headers = {MAX_ATTEMPTS_HEADER: str(attempts)}
        if job_key is not None:
            headers[JOB_KEY_HEADER] = encode_header(job_key)
        options: dict[str, Any] = {
            "url": self.config.destination(job.name),
            "body": body,
            "headers": headers,
            "retries": attempts - 1,
            # One id per call: the SDK's retries of this call send it again, a new call gets a new one.
            "deduplication_id": deduplication_id(job_key),
        }
        if queue is not None:
            if run_at is not None:
                raise errors.ConfigurationError(
                    f"job {job.name!r}: QStash queues deliver in order and cannot delay one message; "
                    "pass run_at or queue, not both"
                )
            response: Any = await self.client.message.enqueue_json(queue=queue, **options)
        else:
            if run_at is not None:
                options["not_before"] = int(run_at.timestamp())
            response = await self.client.message.publish_json(**options)
        deduplicated = bool(response.deduplicated)
        if deduplicated and job_key is not None and mode is None:
            log.warning(
                "job %r: QStash kept the waiting message %s with job_key %r and dropped this payload; it cannot "
                "replace a waiting message (pass job_key_mode='unsafe_dedupe' to say that first-wins is intended)",
                job.name,
                response.message_id,
                job_key,
            )
        return EnqueuedJob(response.message_id, job.name, deduplicated=deduplicated)

    async def close(self) -> None:
        await self.client.http._client.aclose()


# -- schedules -------------------------------------------------------------------------------------
def schedule_id(entry: ScheduleEntry) -> str:
    """Stable across deploys, so an upsert replaces the schedule instead of adding a twin."""
    return SCHEDULE_ID_PREFIX + _UNSAFE_ID.sub("_", entry.id)


def schedule_plan(
    entries: Sequence[ScheduleEntry], config: QStashConfig, registry: JobRegistry | None = None
) -> list[dict[str, Any]]:
    """What sync_schedules sends for each entry: id, destination, cron (with CRON_TZ), body, retries."""
    check_callback_url(config.callback_url)
    plan = []
    for entry in entries:
        job = registry.get(entry.task) if registry is not None and entry.task in registry else None
        attempts = entry.max_attempts or (job.max_attempts if job else DEFAULT_MAX_ATTEMPTS)
        if entry.backfill is not None or entry.max is not None or entry.priority is not None:
            log.warning("schedule %r: backfill, max and priority have no QStash equivalent and are ignored", entry.id)
        cron = entry.cron if entry.timezone == "UTC" else f"CRON_TZ={entry.timezone} {entry.cron}"
        headers = {MAX_ATTEMPTS_HEADER: str(attempts)}
        if entry.job_key is not None:
            headers[JOB_KEY_HEADER] = encode_header(entry.job_key)
        plan.append(
            {
                "schedule_id": schedule_id(entry),
                "destination": config.destination(entry.task),
                "cron": cron,
                "body": json.dumps(dict(entry.payload), sort_keys=True),
                "retries": attempts - 1,
                "headers": headers,
            }
        )
    return plan


async def sync_schedules(
    entries: Sequence[ScheduleEntry],
    config: QStashConfig,
    *,
    registry: JobRegistry | None = None,
    client: AsyncQStash | None = None,
    prune: bool = True,
) -> dict[str, list[str]]:
    """Upsert every entry as a QStash schedule; with ``prune``, delete jobworker schedules no entry names."""
    own = client is None
    client = client or _client(config)
    plan = schedule_plan(entries, config, registry)
    try:
        for item in plan:
            await client.schedule.create(
                destination=item["destination"],
                cron=item["cron"],
                body=item["body"],
                content_type="application/json",
                headers=item["headers"],
                retries=item["retries"],
                schedule_id=item["schedule_id"],
            )
        removed: list[str] = []
        if prune:
            wanted = {item["schedule_id"] for item in plan}
            for existing in await client.schedule.list():
                if existing.schedule_id.startswith(SCHEDULE_ID_PREFIX) and existing.schedule_id not in wanted:
                    await client.schedule.delete(existing.schedule_id)
                    removed.append(existing.schedule_id)
    finally:
        if own:
            await client.http._client.aclose()
    return {"upserted": [item["schedule_id"] for item in plan], "deleted": removed}


def main_sync_schedules(args: argparse.Namespace) -> int:
    """``jobworker qstash sync-schedules --tasks MOD [--schedules FILE] [--dry-run]``."""
    from jobworker.scheduler import collect_entries

    registry = load_registry(args.tasks)
    path = getattr(args, "schedules", None) or os.environ.get("JOBWORKER_SCHEDULES")
    entries = collect_entries(registry, path)
    config = QStashConfig.from_env(receive=False)
    as_json = bool(getattr(args, "json", False))
    if getattr(args, "dry_run", False):
        plan = schedule_plan(entries, config, registry)
        if as_json:
            print(json.dumps({"dry_run": True, "schedules": plan}))
        else:
            for item in plan:
                print(f"would upsert {item['schedule_id']}: {item['cron']} -> {item['destination']}")
        return 0
    result = asyncio.run(sync_schedules(entries, config, registry=registry))
    if as_json:
        print(json.dumps(result))
    else:
        for name in result["upserted"]:
            print(f"upserted {name}")
        for name in result["deleted"]:
            print(f"deleted {name}")
    sys.stdout.flush()
    return 0
