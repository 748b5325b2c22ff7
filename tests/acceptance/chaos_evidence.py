"""Why a job of the chaos suite ran twice: each duplicate needs an at-least-once cause tied to its run.

A second run of a job can only start once the lock of the earlier run's worker is gone. The earlier run's
worker was killed or forced down, or a statement took the lock from it, which the ``chaos_unlocks`` trigger
records with the statement's text (tests/acceptance/chaos_tasks.py). The accepted causes:

- the worker process was SIGKILLed (pid, time) after the run started, so its completion never committed;
- a second SIGTERM forced the worker down (pid, time) before its completion was written;
- the stale-worker sweep took the job from the run's worker: the sweep itself decides that from the heartbeat
  the database recorded, so this covers a partition, a frozen or starved worker, a database outage longer
  than the sweep threshold, and a worker that shut down with the database down (its results were discarded
  when the grace period ended and its row stayed, stale);
- the run's worker returned the job because it had lost its heartbeat (it logged the fence): the results of
  jobs that run while a worker is fenced are never written, since the sweep may already have moved them.

Anything else (a stray-lock release of a job that ran, a failure recorded for a run that succeeded, no
unlock at all) is unexplained, and fails the suite.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SLACK = timedelta(seconds=1)
"""Clock slack between the worker's log lines, the handler's timestamps and the database's."""
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
_STARTED = re.compile(r"jobworker\.worker: worker (\S+) started")


@dataclass(frozen=True)
class Unlock:
    job_id: int
    locked_by: str
    at: datetime
    statement: str

    @property
    def kind(self) -> str:
        """Which statement took the lock (the SQL files' own text tells them apart)."""
        if "recover_worker_jobs" in self.statement:
            return "sweep"
        if "with returned as" in self.statement:
            return "return"
        if "with released as" in self.statement:
            return "stray-release"
        if "with input as" in self.statement:
            return "fail"
        return "other"


@dataclass(frozen=True)
class Cause:
    """An at-least-once cause: ``kind`` groups them in the bench table, ``detail`` carries the evidence."""

    kind: str
    detail: str

    def __str__(self) -> str:
        return self.detail


@dataclass(frozen=True)
class Sweep:
    at: datetime
    stale_workers: tuple[str, ...]
    recovered: tuple[int, ...]


@dataclass
class Evidence:
    killed: dict[int, datetime] = field(default_factory=dict)  # pid -> SIGKILL sent
    forced: dict[int, datetime] = field(default_factory=dict)  # pid -> exited after a second SIGTERM
    partitions: list[tuple[int, datetime, datetime]] = field(default_factory=list)  # pid, from, to
    db_faults: list[tuple[str, datetime, datetime]] = field(default_factory=list)
    sweeps: list[Sweep] = field(default_factory=list)
    unlocks: dict[int, list[Unlock]] = field(default_factory=dict)  # job id -> in time order
    fences: dict[int, list[datetime]] = field(default_factory=dict)  # pid -> "no heartbeat recorded" logged
    shutdown_unrecorded: dict[int, datetime] = field(default_factory=dict)  # pid -> results discarded at exit
    # pid -> the worker id it logged at start. A run's own locked_by is read when its first side-table write
    # lands, which a partition can hold back until the job was moved or deleted (then it names no one).
    worker_ids: dict[int, str] = field(default_factory=dict)

    def add_unlocks(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for r in rows:
            unlock = Unlock(int(r["job_id"]), str(r["locked_by"]), r["unlocked_at"], str(r["statement"]))
            self.unlocks.setdefault(unlock.job_id, []).append(unlock)
        for unlocks in self.unlocks.values():
            unlocks.sort(key=lambda u: u.at)

    def read_worker_log(self, pid: int, path: Path) -> None:
        """The fences and discarded results a worker logged, with the log line's time."""
        for line in path.read_text(errors="replace").splitlines():
            match = _LOG_TIME.match(line)
            if match is None:
                continue
            at = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").astimezone(UTC)  # local time
            if started := _STARTED.search(line):
                self.worker_ids[pid] = started.group(1)
            elif "no heartbeat recorded for" in line:
                self.fences.setdefault(pid, []).append(at)
            elif "shutting down with" in line and "not recorded" in line:
                self.shutdown_unrecorded[pid] = at

    def ended(self, run: Mapping[str, Any]) -> datetime | None:
        """When a run ended: its handler's own end, or its process's death."""
        finished: datetime | None = run["finished_at"]
        return finished or self.killed.get(run["pid"]) or self.forced.get(run["pid"])

    def cause(self, run: Mapping[str, Any]) -> Cause | None:
        """The at-least-once cause that let ``run``'s job run again, or None when nothing explains it."""
        pid, started = run["pid"], run["started_at"]
        if pid in self.killed and started <= self.killed[pid]:
            return Cause(
                "worker SIGKILLed",
                f"worker pid {pid} was SIGKILLed at {_t(self.killed[pid])}, before the run's completion committed",
            )
        if pid in self.forced and started <= self.forced[pid]:
            return Cause(
                "worker forced down by a second SIGTERM",
                f"worker pid {pid} was forced down by a second SIGTERM (exited {_t(self.forced[pid])}) "
                "before the run's completion was written",
            )
        worker = self.worker_ids.get(pid, run["locked_by"])
        unlock = next(
            (u for u in self.unlocks.get(run["job_id"], []) if u.locked_by == worker and u.at >= started - SLACK),
            None,
        )
        if unlock is None:
            return None
        if unlock.kind == "sweep":
            recorded = next(
                (s for s in self.sweeps if unlock.locked_by in s.stale_workers and unlock.job_id in s.recovered),
                None,
            )
            seen = f"the sweep at {_t(recorded.at)} recorded" if recorded else "a sweep found"
            why, detail = self._why_stale(pid, started, unlock.at)
            return Cause(
                f"swept from a stale worker ({why})",
                f"{seen} worker {unlock.locked_by} stale and took the job back at {_t(unlock.at)} ({detail})",
            )
        if unlock.kind == "return":
            fenced = [f for f in self.fences.get(pid, []) if started - SLACK <= f <= unlock.at + SLACK]
            if fenced:
                return Cause(
                    "returned by its worker after a lost heartbeat",
                    f"worker pid {pid} lost its heartbeat (fenced at {_t(fenced[0])}), so it wrote no result for "
                    f"the run and returned the job at {_t(unlock.at)}",
                )
        return None

    def _why_stale(self, pid: int, started: datetime, at: datetime) -> tuple[str, str]:
        """(kind, detail) of why the sweep found the run's worker stale."""
        for p, frm, to in self.partitions:
            if p == pid and frm - SLACK <= at <= to + timedelta(seconds=30):
                return "partitioned", f"partitioned by the proxy {_t(frm)}-{_t(to)}"
        if pid in self.shutdown_unrecorded:
            when = _t(self.shutdown_unrecorded[pid])
            return "shut down with the database down", f"it shut down with results unrecorded at {when}"
        for name, frm, to in self.db_faults:
            if frm - SLACK <= at <= to:
                return f"during {name}", f"its heartbeat could not be written during {name} {_t(frm)}-{_t(to)}"
        fences = [f for f in self.fences.get(pid, []) if started - SLACK <= f <= at + SLACK]
        if fences:
            return "heartbeat failed", f"its heartbeat failed; it fenced at {_t(fences[0])}"
        return (
            "late heartbeat",
            "its heartbeat was older than the threshold: the worker was starved or its replies late",
        )


def _t(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]
