"""The ``jobworker`` command line. One function per command, each thin over WorkerUtils or Worker.

Exit codes: 0 success; 1 the operation failed (database unreachable, job not found, nothing matched);
2 bad input (usage, configuration, payload); 3 a breaking migration is pending while workers run;
4 the database schema is newer than this jobworker; 5 it is at a graphile-worker migration older than
jobworker can upgrade from.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from jobworker import __version__, db, errors, jobs, migrate
from jobworker.durations import format_duration, parse_duration
from jobworker.models import QueueStats
from jobworker.registry import load_registry
from jobworker.settings import EndpointSettings, WorkerSettings
from jobworker.worker_utils import (
    CLEANUP_TASKS,
    DEFAULT_RECOVERY_DELAY,
    ORPHAN_AFTER,
    STALE_AFTER,
    TOP_QUEUES,
    WorkerUtils,
)

EXIT_FAILED, EXIT_USAGE, EXIT_BREAKING_PENDING, EXIT_SCHEMA_TOO_NEW, EXIT_SCHEMA_TOO_OLD = 1, 2, 3, 4, 5
STATES = ("all", "ready", "scheduled", "locked", "failed")


def _iso(value: str, flag: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise errors.ConfigurationError(
            f"{flag}: {value!r} is not an ISO 8601 time, e.g. 2026-01-31T12:00:00Z"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _payload(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise errors.ConfigurationError(f"--payload: not valid JSON ({exc.msg} at column {exc.colno})") from None


def _ids(values: Sequence[str]) -> list[int]:
    try:
        return [int(v) for v in values]
    except ValueError:
        raise errors.ConfigurationError(f"job ids must be integers, got {' '.join(values)!r}") from None


class Output:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def emit(self, data: Any, text: str | Callable[[], str]) -> None:
        if self.as_json:
            print(json.dumps(_plain(data), default=str, indent=None))
        else:
            print(text() if callable(text) else text)


def _plain(data: Any) -> Any:
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(data).items()}
    if isinstance(data, list):
        return [_plain(v) for v in data]
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items()}
    if isinstance(data, datetime):
        return data.isoformat()
    return data


# -- commands -------------------------------------------------------------------------------------
async def cmd_migrate(args: argparse.Namespace, out: Output) -> int:
    url = db.resolve_database_url(args.database_url)
    result = await migrate.migrate(url, db.resolve_schema(args.schema), allow_breaking=args.allow_breaking)
    text = "applied " + ", ".join(result.applied) if result.applied else "already up to date"
    out.emit(result, f"{text} (graphile {result.graphile_version}, jobworker {result.jobworker_version})")
    return 0


async def cmd_worker(args: argparse.Namespace, out: Output) -> int:
    from jobworker import httpserver
    from jobworker.worker import EXIT_BREAKING_MIGRATION, Worker

    registry = load_registry(args.tasks)
    url = db.resolve_database_url(args.database_url, worker=True)
    # Refuse a schema this version cannot run on (not installed, or a newer breaking migration).
    graphile, _ = await migrate.schema_version(url, db.resolve_schema(args.schema))
    if graphile is None:
        raise errors.DatabaseError(
            f"schema {db.resolve_schema(args.schema)} is not installed; run `jobworker migrate` first"
        )
    settings = WorkerSettings.from_env(
        concurrency=args.concurrency,
        poll_interval=parse_duration(args.poll_interval, field="--poll-interval").total_seconds()
        if args.poll_interval
        else None,
        graceful_shutdown=parse_duration(args.graceful_shutdown, field="--graceful-shutdown").total_seconds()
        if args.graceful_shutdown
        else None,
        queues=tuple(args.queue) if args.queue else None,
        forbidden_flags=tuple(args.forbidden_flag) if args.forbidden_flag else None,
        batch=True if args.batch else None,
        http_port=args.http_port,
        heartbeat_interval=parse_duration(args.heartbeat_interval, field="--heartbeat-interval").total_seconds()
        if args.heartbeat_interval
        else None,
        sweep_threshold=parse_duration(args.sweep_threshold, field="--sweep-threshold").total_seconds()
        if args.sweep_threshold
        else None,
    )
    worker = Worker(registry, database_url=args.database_url, schema=args.schema, settings=settings)
    if args.once:
        count = await worker.run_once()
        out.emit({"processed": count}, f"processed {count} jobs")
        return 0
    schema = db.resolve_schema(args.schema)

    async def queue_stats() -> tuple[QueueStats, int | None]:
        """For the operator's no-Secrets mode (/metrics?queue_stats=1), on this worker's own connection URL."""
        async with WorkerUtils(url, schema) as utils:
            stats = await utils.queue_stats(top_queues=TOP_QUEUES)
        return stats, (await migrate.schema_version(url, schema))[0]

    runner = (
        await httpserver.start(settings.http_port, lambda: worker.healthy, queue_stats=queue_stats)
        if settings.http_port
        else None
    )
    _on_signals(lambda first: worker.stop(force=not first))
    try:
        await worker.run()
    finally:
        if runner is not None:
            await runner.cleanup()
    # graphile-worker's exit code after a breaking migration (worker:migrate): restart on the new version.
    code = EXIT_BREAKING_MIGRATION if worker.breaking_migration is not None else 0
    # A sync handler abandoned at shutdown keeps its thread, and asyncio.run would wait for it.
    _exit_past_stuck_threads(code)
    return code


def _on_signals(handler: Callable[[bool], None]) -> None:
    """SIGTERM/SIGINT: the first asks for a graceful stop, the next forces it."""
    loop = asyncio.get_running_loop()
    seen = {"count": 0}

    def on_signal(signum: int) -> None:
        seen["count"] += 1
        first = seen["count"] == 1
        print(
            f"received {signal.Signals(signum).name}: "
            + ("stopping after running jobs finish (send again to force)" if first else "forcing exit"),
            file=sys.stderr,
        )
        handler(first)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)


async def cmd_add(args: argparse.Namespace, out: Output) -> int:
    async with WorkerUtils(args.database_url, args.schema) as utils:
        added = await utils.add_job(
            args.task,
            _payload(args.payload),
            queue_name=args.queue,
            run_at=_iso(args.run_at, "--run-at") if args.run_at else None,
            priority=args.priority,
            max_attempts=args.max_attempts,
            job_key=args.job_key,
            job_key_mode=args.job_key_mode,
            flags=args.flag or None,
        )
    verb = "updated" if added.revision else "added"
    out.emit(added, f"{verb} job {added.id} ({args.task}) to run at {added.run_at.isoformat()}")
    return 0


async def cmd_list(args: argparse.Namespace, out: Output) -> int:
    async with WorkerUtils(args.database_url, args.schema) as utils:
        found = await utils.list_jobs(state=args.state, task=args.task, queue_name=args.queue, limit=args.limit)

    def table() -> str:
        lines = [f"{'ID':>8}  {'STATE':<9}  {'TASK':<24}  {'QUEUE':<12}  {'ATTEMPTS':>8}  RUN AT"]
        for job in found:
            lines.append(
                f"{job.id:>8}  {job.state:<9}  {job.task_identifier[:24]:<24}  {(job.queue_name or '-')[:12]:<12}  "
                f"{job.attempts:>3}/{job.max_attempts:<4}  {job.run_at.isoformat(timespec='seconds')}"
            )
        return "\n".join(lines)

    out.emit(found, table)
    return 0


async def cmd_show(args: argparse.Namespace, out: Output) -> int:
    async with WorkerUtils(args.database_url, args.schema) as utils:
        job = await utils.get_job(_ids([args.id])[0])
    if job is None:
        print(f"error: no job with id {args.id}", file=sys.stderr)
        return EXIT_FAILED
    out.emit(job, lambda: "\n".join(f"{k}: {v}" for k, v in _plain(job).items()))
    return 0


async def _by_ids(
    args: argparse.Namespace, out: Output, verb: str, run: Callable[[WorkerUtils], Awaitable[list[int]]]
) -> int:
    wanted = _ids(args.ids)
    async with WorkerUtils(args.database_url, args.schema) as utils:
        done = await run(utils)
    skipped = sorted(set(wanted) - set(done))
    out.emit(
        {verb: sorted(done), "skipped": skipped},
        f"{verb} {len(done)} job(s)" + (f"; skipped {skipped} (not found or locked)" if skipped else ""),
    )
    return EXIT_FAILED if skipped else 0


async def cmd_complete(args: argparse.Namespace, out: Output) -> int:
    return await _by_ids(args, out, "completed", lambda u: u.complete_jobs(_ids(args.ids)))


async def cmd_fail(args: argparse.Namespace, out: Output) -> int:
    return await _by_ids(args, out, "failed", lambda u: u.permanently_fail_jobs(_ids(args.ids), args.reason))


async def cmd_reschedule(args: argparse.Namespace, out: Output) -> int:
    run_at = _iso(args.run_at, "--run-at") if args.run_at else None
    return await _by_ids(
        args,
        out,
        "rescheduled",
        lambda u: u.reschedule_jobs(
            _ids(args.ids),
            run_at=run_at,
            priority=args.priority,
            attempts=args.attempts,
            max_attempts=args.max_attempts,
        ),
    )


async def cmd_remove(args: argparse.Namespace, out: Output) -> int:
    async with WorkerUtils(args.database_url, args.schema) as utils:
        job_id = await utils.remove_job(args.key)
    if job_id is None:
        print(f"error: no job with key {args.key!r}", file=sys.stderr)
        return EXIT_FAILED
    out.emit({"removed": job_id}, f"removed job {job_id} (a running job keeps running but will not retry)")
    return 0


async def cmd_cleanup(args: argparse.Namespace, out: Output) -> int:
    async with WorkerUtils(args.database_url, args.schema) as utils:
        counts = await utils.cleanup(args.operation or CLEANUP_TASKS)
    out.emit(counts, lambda: "\n".join(f"{k}: {v} removed" for k, v in counts.items()))
    return 0


async def cmd_workers(args: argparse.Namespace, out: Output) -> int:
    async with WorkerUtils(args.database_url, args.schema) as utils:
        found = await utils.list_active_workers(parse_duration(args.sweep_threshold, field="--sweep-threshold"))

    def table() -> str:
        lines = [f"{'WORKER':<48}  {'HEARTBEAT AGE':>13}  {'LOCKED':>6}  STARTED"]
        for w in found:
            lines.append(
                f"{w.id[:48]:<48}  {w.heartbeat_age_seconds:>12.1f}s  {w.locked_jobs:>6}  "
                f"{w.started_at.isoformat(timespec='seconds')}"
            )
        return "\n".join(lines)

    out.emit(found, table)
    return 0


async def cmd_force_unlock(args: argparse.Namespace, out: Output) -> int:
    async with WorkerUtils(args.database_url, args.schema) as utils:
        await utils.force_unlock_workers(args.worker_ids)
    out.emit({"unlocked": args.worker_ids}, f"released the locks of {len(args.worker_ids)} worker(s)")
    return 0


async def cmd_sweep(args: argparse.Namespace, out: Output) -> int:
    async with WorkerUtils(args.database_url, args.schema) as utils:
        result = await utils.sweep_stale_workers(
            args.sweep_threshold, args.recovery_delay, dry_run=args.dry_run, orphan_threshold=args.orphan_threshold
        )
    if result.skipped:
        text = "another sweep is running; nothing done"
    else:
        prefix = "would recover" if result.dry_run else "recovered"
        text = (
            f"{prefix} {len(result.recovered_job_ids)} job(s) from {len(result.stale_workers)} stale worker(s)"
            f" and {len(result.orphan_lock_holders)} orphan lock holder(s)"
        )
        if result.unsafe_threshold_workers:
            text += (
                f"; skipped {len(result.unsafe_threshold_workers)} worker(s) whose heartbeat interval is over a"
                " third of the sweep threshold (see the warnings above)"
            )
    out.emit(result, text)
    return 0


async def cmd_stats(args: argparse.Namespace, out: Output) -> int:
    async with WorkerUtils(args.database_url, args.schema) as utils:
        stats = await utils.queue_stats()

    def text() -> str:
        oldest = f"{stats.oldest_ready_seconds:.1f}s" if stats.oldest_ready_seconds is not None else "-"
        lines = [
            f"ready {stats.ready}  scheduled {stats.scheduled}  locked {stats.locked}  failed {stats.failed}",
            f"oldest ready {oldest}  workers active {stats.workers_active}  stale {stats.workers_stale}",
        ]
        lines += [f"  {s.task:<24} {(s.queue or '-'):<12} {s.state:<9} {s.count}" for s in stats.by_task]
        return "\n".join(lines)

    out.emit(stats, text)
    return 0


def _external(module: str, attr: str) -> Callable[[argparse.Namespace, Output], int]:
    """A command implemented in its own module, whose ``main(args)`` runs its own event loop."""

    def run(args: argparse.Namespace, out: Output) -> int:
        import importlib

        result = getattr(importlib.import_module(module), attr)(args)
        return int(asyncio.run(result) if asyncio.iscoroutine(result) else result)

    return run


# -- parser ---------------------------------------------------------------------------------------
def _default(settings: type[Any], name: str) -> str:
    """A settings field's default as its flag's help states it (settings.py writes each default once)."""
    value = next(f.default for f in dataclasses.fields(settings) if f.name == name)
    if isinstance(value, float):
        return format_duration(timedelta(seconds=value))
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1024 and value % 1024 == 0:
        return f"{value // 1024 // 1024} MiB" if value % (1024 * 1024) == 0 else f"{value // 1024} KiB"
    return str(value)


class _DeprecatedAlias(argparse.Action):
    """An old spelling of a flag, kept for one release: it fills the new flag's value and warns once."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, new: str, append: bool = False, **kw: Any):
        self.new, self.append = new, append
        kw.setdefault("help", f"deprecated spelling of {new}, removed in the next release")
        super().__init__(option_strings, dest, **kw)

    def __call__(
        self, parser: argparse.ArgumentParser, ns: argparse.Namespace, values: Any, option: str | None = None
    ) -> None:
        if not getattr(ns, f"_warned_{self.dest}", False):
            print(
                f"warning: {option} is deprecated and will be removed in the next release; use {self.new}",
                file=sys.stderr,
            )
            setattr(ns, f"_warned_{self.dest}", True)
        setattr(ns, self.dest, [*(getattr(ns, self.dest, None) or []), values] if self.append else values)


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line (and exit 2), like every other error of the CLI."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="jobworker", description="Background jobs on PostgreSQL (graphile-worker schema).")
    p.add_argument("--version", action="version", version=f"jobworker {__version__}")
    p.add_argument(
        "--database-url", help="PostgreSQL URL (default: $DATABASE_URL; workers prefer $WORKER_DATABASE_URL)"
    )
    p.add_argument("--schema", help="schema name (default: $JOBWORKER_SCHEMA or graphile_worker)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, fn: Callable[..., Awaitable[int] | int], help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(func=fn)
        # The global options are accepted after the command too (`jobworker list --json`).
        sp.add_argument("--database-url", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sp.add_argument("--schema", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sp.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        return sp

    sp = cmd("migrate", cmd_migrate, "install or upgrade the schema (safe to run concurrently)")
    sp.add_argument("--allow-breaking", action="store_true", help="apply breaking migrations even while workers run")

    sp = cmd("worker", cmd_worker, "run jobs")
    sp.add_argument("--tasks", required=True, help="module (or module:attribute) holding the job definitions")
    w = WorkerSettings
    sp.add_argument(
        "--concurrency", type=int, help=f"jobs at once (default: $JOBS_CONCURRENCY or {_default(w, 'concurrency')})"
    )
    sp.add_argument("--once", action="store_true", help="run the jobs available now, then exit")
    sp.add_argument("--queue", action="append", help="only claim jobs in this named queue (repeatable)")
    sp.add_argument("--forbidden-flag", action="append", help="never claim jobs with this flag (repeatable)")
    sp.add_argument(
        "--poll-interval", help=f"poll period for future jobs and retries (default {_default(w, 'poll_interval')})"
    )
    sp.add_argument(
        "--graceful-shutdown", help=f"time running jobs get after SIGTERM (default {_default(w, 'graceful_shutdown')})"
    )
    sp.add_argument("--batch", action="store_true", help="claim ahead and complete in batches (see docs)")
    sp.add_argument("--http-port", type=int, help="serve /healthz and /metrics on this port")
    sp.add_argument(
        "--heartbeat-interval", help=f"time between heartbeats (default {_default(w, 'heartbeat_interval')})"
    )
    sp.add_argument(
        "--sweep-threshold",
        help="the stale-worker sweep's threshold: after half of it without a heartbeat the worker stops claiming "
        f"(default {_default(w, 'sweep_threshold')}; at least 3x --heartbeat-interval)",
    )

    sp = cmd("scheduler", _external("jobworker.scheduler", "main"), "run cron schedules, exactly once per tick")
    sp.add_argument("--tasks", required=True, help="module holding the job definitions (and their schedules)")
    sp.add_argument("--schedules", default=os.environ.get("JOBWORKER_SCHEDULES"), help="YAML/JSON schedules file")
    sp.add_argument("--http-port", type=int, help="serve /healthz and /metrics on this port")

    sp = cmd("serve", _external("jobworker.endpoint", "main"), "serve POST /v1/jobs/run/<name> for QStash")
    sp.add_argument("--tasks", required=True, help="module (or module:attribute) holding the job definitions")
    # Defaults and env names: settings.EndpointSettings (docs/options.md); a flag left out reads its env var.
    e = EndpointSettings
    sp.add_argument("--host", help=f"address to listen on (default {_default(e, 'host')})")
    sp.add_argument("--port", type=int, help=f"port to listen on (default {_default(e, 'port')}; 0 picks a free one)")
    sp.add_argument(
        "--max-body-bytes", type=int, help=f"largest body accepted (default {_default(e, 'max_body_bytes')})"
    )
    sp.add_argument(
        "--max-concurrency",
        type=int,
        help=f"deliveries handled at once; more get 503 (default {_default(e, 'max_concurrency')})",
    )
    sp.add_argument(
        "--body-timeout", help=f"time a signed request gets to send its body (default {_default(e, 'body_timeout')})"
    )
    sp.add_argument(
        "--replay-database-url",
        help="PostgreSQL URL of the table every replica records signatures in (default: this process's memory)",
    )
    sp.add_argument(
        "--replay-timeout", help=f"time recording a signature may take (default {_default(e, 'replay_timeout')})"
    )

    sp = cmd("dashboard", _external("jobworker.dashboard.app", "main"), "serve the web dashboard (read-only default)")
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sp.add_argument("--port", type=int, default=8081, help="default 8081")
    sp.add_argument("--base-path", default="", help="URL prefix when served under a path, e.g. /jobs")
    sp.add_argument("--read-only", action="store_true", help="no actions even with --allow-actions (the default)")
    sp.add_argument("--allow-actions", action="store_true", help="enable actions; needs --token or --trust-header")
    sp.add_argument("--token", help="bearer token for sign-in (default: $JOBWORKER_DASHBOARD_TOKEN)")
    sp.add_argument("--trust-header", help="take the user from this header set by an auth proxy (X-Forwarded-User)")
    sp.add_argument("--hide-payloads", action="store_true", help="never show job payloads")
    sp.add_argument("--refresh", default="2s", help="how often the overview refreshes (default 2s)")
    threshold = format_duration(STALE_AFTER)
    sp.add_argument(
        "--sweep-threshold",
        dest="stale_after",
        default=threshold,
        help=f"heartbeat age after which a worker shows as stale (default {threshold}, the sweep's)",
    )
    sp.add_argument("--stale-after", dest="stale_after", action=_DeprecatedAlias, new="--sweep-threshold")
    sp.add_argument("--tasks", help="module with job definitions, for the schedules page's cron and next fire")
    sp.add_argument("--schedules", default=os.environ.get("JOBWORKER_SCHEDULES"), help="schedules file, likewise")

    qs = sub.add_parser("qstash", help="QStash provider utilities").add_subparsers(dest="qstash_command", required=True)
    sp = qs.add_parser("sync-schedules", help="upsert QStash schedules with stable ids")
    sp.set_defaults(func=_external("jobworker.providers.qstash", "main_sync_schedules"))
    sp.add_argument("--tasks", required=True)
    sp.add_argument("--schedules", default=os.environ.get("JOBWORKER_SCHEDULES"))
    sp.add_argument("--dry-run", action="store_true")

    sp = cmd("add", cmd_add, "add a job")
    sp.add_argument("task")
    sp.add_argument("--payload", default="{}", help="JSON payload (default {})")
    sp.add_argument("--queue", help="named queue: its jobs run one at a time")
    sp.add_argument("--run-at", help="ISO 8601 time (default now)")
    sp.add_argument("--priority", type=int, help="lower runs first (default 0)")
    sp.add_argument("--max-attempts", type=int, help=f"default {jobs.DEFAULT_MAX_ATTEMPTS}")
    sp.add_argument("--job-key", help="unique key: adding again updates the existing job")
    sp.add_argument("--job-key-mode", choices=["replace", "preserve_run_at", "unsafe_dedupe"], help="default replace")
    sp.add_argument("--flag", action="append", help="flag for forbidden-flag filtering (repeatable)")

    sp = cmd("list", cmd_list, "list jobs")
    sp.add_argument("--state", default="all", choices=STATES)
    sp.add_argument("--task")
    sp.add_argument("--queue")
    sp.add_argument("--limit", type=int, default=100)

    sp = cmd("show", cmd_show, "show one job, with its payload")
    sp.add_argument("id")

    sp = cmd("complete", cmd_complete, "mark jobs complete (deletes them; running jobs are skipped)")
    sp.add_argument("ids", nargs="+", metavar="ID")

    sp = cmd("fail", cmd_fail, "fail jobs permanently (running jobs are skipped)")
    sp.add_argument("ids", nargs="+", metavar="ID")
    sp.add_argument("--reason", required=True)

    sp = cmd("reschedule", cmd_reschedule, "change run_at/priority/attempts (running jobs are skipped)")
    sp.add_argument("ids", nargs="+", metavar="ID")
    when = sp.add_mutually_exclusive_group()
    when.add_argument("--run-at", help="ISO 8601 time")
    when.add_argument("--now", action="store_true", help="run now (the default)")
    sp.add_argument("--priority", type=int)
    sp.add_argument("--attempts", type=int)
    sp.add_argument("--max-attempts", type=int)

    sp = cmd("remove", cmd_remove, "remove the job with this key")
    sp.add_argument("key")

    sp = cmd("cleanup", cmd_cleanup, "garbage-collect tasks and queues, delete permanently failed jobs")
    sp.add_argument(
        "--operation", action="append", choices=CLEANUP_TASKS, help="cleanup operation (repeatable; default: all three)"
    )
    sp.add_argument(
        "--task", dest="operation", action=_DeprecatedAlias, new="--operation", append=True, choices=CLEANUP_TASKS
    )

    sp = cmd("workers", cmd_workers, "list live workers")
    threshold = format_duration(STALE_AFTER)
    sp.add_argument(
        "--sweep-threshold", default=threshold, help=f"heartbeat age that still counts as live (default {threshold})"
    )
    sp.add_argument("--threshold", dest="sweep_threshold", action=_DeprecatedAlias, new="--sweep-threshold")

    sp = cmd("force-unlock", cmd_force_unlock, "release every lock held by these worker ids")
    sp.add_argument("worker_ids", nargs="+", metavar="WORKER_ID")

    sp = cmd("sweep-stale-workers", cmd_sweep, "recover the jobs of workers that stopped heartbeating")
    threshold, delay = format_duration(STALE_AFTER), format_duration(DEFAULT_RECOVERY_DELAY)
    sp.add_argument(
        "--sweep-threshold", default=threshold, help=f"heartbeat age after which a worker is dead (default {threshold})"
    )
    sp.add_argument("--recovery-delay", default=delay, help=f"delay before recovered jobs run again (default {delay})")
    orphan = format_duration(ORPHAN_AFTER)
    sp.add_argument(
        "--orphan-threshold",
        default=orphan,
        help="age after which a lock held by an unregistered worker id (graphile-worker from Node, which keeps "
        f"jobs locked up to 4 hours by design) is recovered (default {orphan})",
    )
    sp.add_argument("--dry-run", action="store_true")

    cmd("stats", cmd_stats, "queue depth by state, oldest ready job, workers")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Error lines and logs may quote a connection string back (libpq does); mask the known ones.
    secrets = _database_secrets(getattr(args, "database_url", None), getattr(args, "replay_database_url", None))
    db.install_log_redaction(lambda: secrets)
    out = Output(args.json)
    try:
        result = args.func(args, out)
        code: int = asyncio.run(result) if asyncio.iscoroutine(result) else int(result)
    except KeyboardInterrupt:
        code = 130
    except migrate.BreakingMigrationPendingError as exc:
        code = _fail(exc, EXIT_BREAKING_PENDING, secrets)
    except errors.SchemaTooNewError as exc:
        code = _fail(exc, EXIT_SCHEMA_TOO_NEW, secrets)
    except errors.SchemaTooOldError as exc:
        code = _fail(exc, EXIT_SCHEMA_TOO_OLD, secrets)
    except (errors.ConfigurationError, errors.InvalidPayloadError, errors.UnknownTaskError) as exc:
        code = _fail(exc, EXIT_USAGE, secrets)
    except errors.JobworkerError as exc:
        code = _fail(exc, EXIT_FAILED, secrets)
    except OSError as exc:  # e.g. the --port or --http-port is in use
        code = _fail(exc, EXIT_FAILED, secrets)
    _exit_past_stuck_threads(code)
    return code


def _database_secrets(*explicit: str | None) -> frozenset[str]:
    env = ("DATABASE_URL", "WORKER_DATABASE_URL", "JOBWORKER_REPLAY_DATABASE_URL")
    urls = (*explicit, *(os.environ.get(name) for name in env))
    return frozenset(part for url in urls if url for part in db.secret_parts(url))


def _fail(exc: BaseException, code: int, secrets: frozenset[str]) -> int:
    print(f"error: {db.redact(str(exc), secrets)}", file=sys.stderr)
    return code


def _exit_past_stuck_threads(code: int) -> None:
    """A sync handler abandoned at shutdown still holds its thread; don't let it keep the process alive."""
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
