"""The dashboard's actions: each one calls the same WorkerUtils function as the CLI.

Every action first reads which of the chosen jobs no worker holds (``dashboard_unlocked_jobs``) and
acts only on those, so a running job is never touched: graphile's admin functions would change a job
locked for more than 4 hours. Each action is logged with who did it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from jobworker import errors, jobs
from jobworker.dashboard.store import DashboardStore
from jobworker.models import SweepResult
from jobworker.worker_utils import WorkerUtils

log = logging.getLogger("jobworker.dashboard")
MAX_REASON = 1000

ACTIONS = {
    "run_now": "Run now",
    "priority": "Change priority",
    "fail": "Fail permanently",
    "complete": "Complete",
    "requeue": "Re-enqueue failed",
    "delete_key": "Delete by key",
    "retry_group": "Retry group",
    "sweep": "Sweep stale workers",
}
"""Action name -> the label on its button; the names are the URL path segments (``/actions/<name>``)."""


@dataclass(frozen=True)
class Outcome:
    """What an action did: the jobs it changed and the ones it left alone, in one sentence for the page."""

    action: str
    done: list[int]
    skipped: list[int] = field(default_factory=list)
    message: str = ""
    sweep: SweepResult | None = None


class Actions:
    def __init__(self, utils: WorkerUtils, store: DashboardStore) -> None:
        self.utils = utils
        self.store = store

    async def _unlocked(self, job_ids: list[int]) -> tuple[list[int], list[int]]:
        if not job_ids:
            raise errors.ConfigurationError("job_ids: choose at least one job")
        free = [r.id for r in await self.store.unlocked_jobs(job_ids)]
        return free, sorted(set(job_ids) - set(free))

    def _log(self, actor: str, outcome: Outcome, **details: object) -> Outcome:
        extra = " ".join(f"{k}={v!r}" for k, v in details.items())
        log.info(
            "dashboard action %s by %s: done %s, skipped %s %s",
            outcome.action,
            actor,
            outcome.done,
            outcome.skipped,
            extra,
        )
        return outcome

    async def run_now(self, actor: str, job_ids: list[int]) -> Outcome:
        free, _ = await self._unlocked(job_ids)
        done = await self.utils.reschedule_jobs(free, run_at=datetime.now(UTC)) if free else []
        return self._log(actor, _outcome("run_now", job_ids, done, "will run now"))

    async def change_priority(self, actor: str, job_ids: list[int], priority: int) -> Outcome:
        jobs.validate_priority(priority)
        rows = await self.store.unlocked_jobs(job_ids) if job_ids else []
        if not job_ids:
            raise errors.ConfigurationError("job_ids: choose at least one job")
        # reschedule_jobs moves run_at to now unless given one: keep each job's own run_at.
        by_run_at: dict[datetime | None, list[int]] = {}
        for r in rows:
            by_run_at.setdefault(r.run_at, []).append(r.id)
        done: list[int] = []
        for run_at, ids in by_run_at.items():
            done += await self.utils.reschedule_jobs(ids, run_at=run_at, priority=priority)
        return self._log(actor, _outcome("priority", job_ids, done, f"now have priority {priority}"), priority=priority)

    async def fail(self, actor: str, job_ids: list[int], reason: str) -> Outcome:
        reason = reason.strip()
        if not reason:
            raise errors.ConfigurationError("reason: say why these jobs fail (it becomes their last_error)")
        if len(reason) > MAX_REASON:
            raise errors.ConfigurationError(f"reason: at most {MAX_REASON} characters")
        free, _ = await self._unlocked(job_ids)
        done = await self.utils.permanently_fail_jobs(free, f"{reason} (failed by {actor} from the dashboard)")
        return self._log(actor, _outcome("fail", job_ids, done, "failed permanently"), reason=reason)

    async def complete(self, actor: str, job_ids: list[int]) -> Outcome:
        free, _ = await self._unlocked(job_ids)
        done = await self.utils.complete_jobs(free) if free else []
        return self._log(actor, _outcome("complete", job_ids, done, "completed (deleted)"))

    async def requeue(self, actor: str, job_ids: list[int]) -> Outcome:
        """Give permanently failed jobs their attempts back and run them now; other jobs are skipped."""
        rows = await self.store.unlocked_jobs(job_ids) if job_ids else []
        if not job_ids:
            raise errors.ConfigurationError("job_ids: choose at least one job")
        failed = [r.id for r in rows if r.attempts >= r.max_attempts]
        done = await self.utils.reschedule_jobs(failed, run_at=datetime.now(UTC), attempts=0) if failed else []
        return self._log(actor, _outcome("requeue", job_ids, done, "re-enqueued"))

    async def delete_key(self, actor: str, job_key: str) -> Outcome:
        jobs.validate_job_key(job_key)
        # One statement checks and deletes (leave_running): graphile's remove_job would free the key and stop
        # the retries of a job claimed between a separate check and the delete.
        removed = await self.utils.remove_job(job_key, leave_running=True)
        if removed is not None:
            outcome = Outcome("delete_key", [removed], [], f"1 job(s) deleted (key {job_key!r})")
            return self._log(actor, outcome, key=job_key)
        found = await self.store.job_by_key(job_key)  # only to say why nothing was deleted
        if found is None:
            return self._log(actor, Outcome("delete_key", [], [], f"no job has key {job_key!r}"), key=job_key)
        outcome = Outcome("delete_key", [], [found.id], f"job {found.id} is running; left alone")
        return self._log(actor, outcome, key=job_key)

    async def retry_group(self, actor: str, task: str, first_line: str) -> Outcome:
        """Run a failure group's jobs now; permanently failed ones get their attempts back."""
        rows = await self.store.failure_group_jobs(task, first_line)
        failed = [r.id for r in rows if r.attempts >= r.max_attempts]
        retrying = [r.id for r in rows if r.attempts < r.max_attempts]
        now = datetime.now(UTC)
        done = await self.utils.reschedule_jobs(failed, run_at=now, attempts=0) if failed else []
        done += await self.utils.reschedule_jobs(retrying, run_at=now) if retrying else []
        ids = [r.id for r in rows]
        return self._log(actor, _outcome("retry_group", ids, done, "will run now"), task=task, first_line=first_line)

    async def sweep(self, actor: str, *, threshold: str, dry_run: bool) -> Outcome:
        result = await self.utils.sweep_stale_workers(threshold, dry_run=dry_run)
        if result.skipped:
            message = "another sweep is running; nothing done"
        else:
            verb = "would recover" if dry_run else "recovered"
            message = (
                f"{verb} {len(result.recovered_job_ids)} job(s) from {len(result.stale_workers)} stale worker(s) "
                f"and {len(result.orphan_lock_holders)} unregistered lock holder(s)"
            )
        outcome = Outcome("sweep", result.recovered_job_ids, [], message, sweep=result)
        if not dry_run:
            self._log(actor, outcome, threshold=threshold, stale=result.stale_workers)
        return outcome


def _outcome(action: str, wanted: list[int], done: list[int], verb: str) -> Outcome:
    skipped = sorted(set(wanted) - set(done))
    message = f"{len(done)} job(s) {verb}"
    if skipped:
        message += f"; skipped {', '.join(map(str, skipped))} (running, gone, or not applicable)"
    return Outcome(action, sorted(done), skipped, message)
