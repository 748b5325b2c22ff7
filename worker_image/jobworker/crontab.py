"""Schedule entries: parsing (entry mappings, graphile crontab lines, schedule files) and tick math.

Pure: no database, no clock. ``scheduler.py`` does the I/O.

Time zones and DST. Cron fields are matched against the *wall clock* of the entry's zone, and each
matching wall time becomes one instant:

* a wall time that does not exist (spring forward: 02:30 in America/New_York) fires once, at the
  instant it would have been without the jump (03:30 local), unless that instant is already a tick;
* a wall time that exists twice (fall back: 01:30) fires once, at its first occurrence. This holds
  for interval schedules too (``*/15 * * * *`` skips the second 01:00-01:59); use UTC for strict
  intervals.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from croniter import croniter
from croniter.croniter import CroniterError

from jobworker import errors, jobs
from jobworker.durations import parse_duration

if TYPE_CHECKING:
    from jobworker.registry import JobRegistry

_FIELDS = (
    "id",
    "task",
    "cron",
    "timezone",
    "payload",
    "queue",
    "priority",
    "max_attempts",
    "job_key",
    "job_key_mode",
    "backfill",
    "max",
)
# The CRD spells these in camelCase; the operator renders snake_case, but hand-written files may not.
_ALIASES = {"maxAttempts": "max_attempts", "jobKey": "job_key", "jobKeyMode": "job_key_mode", "tz": "timezone"}
# graphile-worker's crontab options, mapped to entry fields. Note graphile's ``max`` is max attempts.
_CRONTAB_OPTIONS = {
    "id": "id",
    "fill": "backfill",
    "max": "max_attempts",
    "queue": "queue",
    "jobKey": "job_key",
    "jobKeyMode": "job_key_mode",
    "priority": "priority",
    "tz": "timezone",
}
_CRONTAB_LINE = re.compile(
    r"^(?P<cron>(?:\S+\s+){4}\S+)\s+(?P<task>[A-Za-z0-9_:\-./]+)"
    r"(?:\s+\?(?P<options>\S*))?(?:\s+(?P<payload>\{.*\}))?\s*$"
)
# A wall time in a DST gap or fold lies within this of its instant; widen the search by it.
_DST_SLACK = timedelta(hours=3)


@dataclass(frozen=True, kw_only=True)
class ScheduleEntry:
    """One schedule. ``None`` options fall back to the job definition's defaults at enqueue time."""

    id: str
    task: str
    cron: str
    timezone: str = "UTC"
    payload: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    max_attempts: int | None = None
    job_key: str | None = None
    job_key_mode: jobs.JobKeyMode = jobs.JobKeyMode.REPLACE
    backfill: timedelta | None = None
    """Enqueue ticks missed while no scheduler ran, up to this far back (graphile's ``fill``)."""
    max: int | None = None
    """At most this many jobs per tick for this entry (the newest are kept when backfilling)."""
    source: str = ""
    """Where the entry was defined, for error messages."""

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def _fail(where: str, message: str) -> errors.ConfigurationError:
    return errors.ConfigurationError(f"{where}: {message}")


def _check_cron(cron: object, where: str) -> str:
    if not isinstance(cron, str) or len(cron.split()) != 5:
        raise _fail(where, f"cron {cron!r} must have 5 fields (minute hour day-of-month month day-of-week)")
    cron = " ".join(cron.split())
    if not croniter.is_valid(cron):
        raise _fail(where, f"cron {cron!r} is not a valid cron expression")
    try:
        croniter(cron, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterError:
        # e.g. 0 0 30 2 *: valid syntax, but no date matches; croniter would raise at the first tick.
        raise _fail(
            where, f"cron {cron!r} never fires: no date matches it (check the day of month and month)"
        ) from None
    return cron


def _check_timezone(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(where, f"timezone {value!r} must be an IANA zone name such as Europe/Berlin")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise _fail(where, f"timezone {value!r} is not a known IANA time zone (for example Europe/Berlin)") from None
    return value


def parse_entry(raw: Mapping[str, Any], *, where: str, default_task: str | None = None) -> ScheduleEntry:
    """Validate one entry mapping; every error names ``where`` (and the id, once known)."""
    if not isinstance(raw, Mapping):
        raise _fail(where, f"a schedule entry must be a mapping, not {type(raw).__name__}")
    values = {_ALIASES.get(k, k): v for k, v in raw.items()}
    task = values.get("task", default_task)
    entry_id = values.get("id", task)
    if isinstance(entry_id, str) and entry_id:
        where = f"{where} (id {entry_id!r})"
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise _fail(where, f"unknown field(s) {', '.join(unknown)}; known fields: {', '.join(_FIELDS)}")
    if not isinstance(task, str) or not task:
        raise _fail(where, "task: required (the job name to enqueue)")
    if not isinstance(entry_id, str) or not entry_id:
        raise _fail(where, f"id: {entry_id!r} must be a non-empty string")
    try:
        jobs.validate_identifier(task, field="task")
        payload = values.get("payload") or {}
        if not isinstance(payload, Mapping):
            raise errors.ConfigurationError("payload: must be a mapping (the cron job adds _cron to it)")
        # allow_nan=False: NaN and Infinity are valid YAML but not JSON, and PostgreSQL refuses them.
        json.dumps(payload, allow_nan=False)
        queue = values.get("queue")
        if queue is not None:
            jobs.validate_identifier(queue, field="queue")
        priority = values.get("priority")
        if priority is not None:
            jobs.validate_priority(priority)
        max_attempts = values.get("max_attempts")
        if max_attempts is not None:
            jobs.validate_max_attempts(max_attempts)
        job_key = values.get("job_key")
        if job_key is not None:
            jobs.validate_job_key(job_key)
        mode = jobs.validate_job_key_mode(values.get("job_key_mode") or "replace")
        backfill = values.get("backfill")
        fill = parse_duration(backfill, field="backfill") if backfill not in (None, "", 0) else None
        limit = values.get("max")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise errors.ConfigurationError(f"max: {limit!r} must be an integer of at least 1 (jobs per tick)")
    except errors.ConfigurationError as exc:
        raise _fail(where, str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise _fail(where, f"payload: not JSON-serialisable: {exc}") from None
    return ScheduleEntry(
        id=entry_id,
        task=task,
        cron=_check_cron(values.get("cron"), where),
        timezone=_check_timezone(values.get("timezone") or "UTC", where),
        payload=dict(payload),
        queue=queue,
        priority=priority,
        max_attempts=max_attempts,
        job_key=job_key,
        job_key_mode=mode,
        backfill=fill,
        max=limit,
        source=where,
    )


def parse_crontab_line(line: str, *, where: str) -> ScheduleEntry:
    """One graphile-worker crontab line: ``* * * * * task ?fill=1h&max=3&queue=q {"json": 1}``."""
    match = _CRONTAB_LINE.match(line.strip())
    if not match:
        raise _fail(where, f"{line.strip()!r} is not a crontab line: '<5 cron fields> <task> [?options] [{{json}}]'")
    raw: dict[str, Any] = {"task": match["task"], "cron": match["cron"]}
    where = f"{where} ({line.strip()!r})"
    if match["options"]:
        try:
            pairs = urllib.parse.parse_qsl(match["options"], keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise _fail(where, f"options ?{match['options']} are not key=value pairs joined by &") from None
        for key, value in pairs:
            if key not in _CRONTAB_OPTIONS:
                raise _fail(where, f"unknown option {key!r}; known: {', '.join(_CRONTAB_OPTIONS)}")
            target = _CRONTAB_OPTIONS[key]
            if target in ("max_attempts", "priority"):
                try:
                    raw[target] = int(value)
                except ValueError:
                    raise _fail(where, f"option {key}={value!r} must be an integer") from None
            else:
                raw[target] = value
    if match["payload"]:
        try:
            raw["payload"] = json.loads(match["payload"])
        except json.JSONDecodeError as exc:
            raise _fail(where, f"payload is not valid JSON: {exc}") from None
    return parse_entry(raw, where=where)


def parse_crontab(text: str, *, where: str = "crontab") -> list[ScheduleEntry]:
    """Every non-blank, non-``#`` line of a crontab."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            out.append(parse_crontab_line(line, where=f"{where} line {number}"))
    return out


def parse_schedules(data: Any, *, where: str) -> list[ScheduleEntry]:
    """A parsed schedules document: a list of entries, or ``{schedules: [...], crontab: str | [str]}``."""
    if data is None:
        return []
    if isinstance(data, str):
        return parse_crontab(data, where=where)
    entries: Any = data
    crontab: Any = None
    if isinstance(data, Mapping):
        unknown = sorted(repr(key) for key in set(data) - {"schedules", "crontab"})  # any YAML key, on one line
        if unknown:
            raise _fail(where, f"unknown top-level key(s) {', '.join(unknown)}; expected schedules and/or crontab")
        entries, crontab = data.get("schedules") or [], data.get("crontab")
    if not isinstance(entries, list):
        raise _fail(where, "schedules must be a list of entries")
    out = [parse_entry(raw, where=f"{where} entry {i + 1}") for i, raw in enumerate(entries)]
    if isinstance(crontab, list):
        crontab = "\n".join(str(line) for line in crontab)
    if crontab is not None and not isinstance(crontab, str):
        raise _fail(where, "crontab must be a string or a list of crontab lines")
    if crontab:
        out += parse_crontab(crontab, where=f"{where} crontab")
    return out


def load_schedules_file(path: str | Path) -> list[ScheduleEntry]:
    """A YAML/JSON schedules file, or a file of graphile crontab lines."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise errors.ConfigurationError(f"schedules file {str(path)!r}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        # Crontab lines such as "* * * * * task" are not YAML (a bare * is an alias): read them as a crontab.
        data = text
    if isinstance(data, str):
        data = text
    return parse_schedules(data, where=str(path))


def entries_from_registry(registry: JobRegistry) -> list[ScheduleEntry]:
    """Schedules declared with ``define_job(..., schedule=...)``: a cron string or an entry mapping."""
    out = []
    for job in registry:
        if job.schedule is None:
            continue
        where = f"define_job({job.name!r}) schedule"
        raw: Mapping[str, Any] = {"cron": job.schedule} if isinstance(job.schedule, str) else job.schedule
        out.append(parse_entry(raw, where=where, default_task=job.name))
    return out


def check_unique(entries: Sequence[ScheduleEntry]) -> None:
    seen: dict[str, ScheduleEntry] = {}
    for entry in entries:
        if entry.id in seen:
            raise errors.ConfigurationError(
                f"schedule id {entry.id!r} is defined twice ({seen[entry.id].source} and {entry.source}); "
                "give one an explicit id"
            )
        seen[entry.id] = entry


def day_or(cron: str) -> bool:
    """Whether a day must match day-of-month OR day-of-week, as graphile-worker decides it (cronMatcher.ts).

    Only when both fields restrict, that is neither lists every value: ``1-31`` or ``0-6`` counts as ``*``
    there, where croniter would OR any field that is not literally ``*``.
    """
    expanded = croniter.expand(cron)[0]
    dom, dow = expanded[2], expanded[4]
    restricts_dom = dom != ["*"] and len(set(dom)) < 31
    restricts_dow = dow != ["*"] and len({d % 7 if isinstance(d, int) else d for d in dow}) < 7
    return restricts_dom and restricts_dow


def ticks_between(entry: ScheduleEntry, after: datetime, until: datetime) -> list[datetime]:
    """The fire instants (UTC) in ``(after, until]``, per the DST rules in the module docstring."""
    zone = entry.zone
    lo = after.astimezone(zone).replace(tzinfo=None) - _DST_SLACK
    hi = until.astimezone(zone).replace(tzinfo=None) + _DST_SLACK
    found: set[datetime] = set()
    it = croniter(entry.cron, lo, day_or=day_or(entry.cron))
    while (wall := it.get_next(datetime)) <= hi:
        # fold=0 picks the first of a repeated wall time, and the pre-jump offset for a missing one.
        instant = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
        if after < instant <= until:
            found.add(instant)
    return sorted(found)


def next_tick(entry: ScheduleEntry, after: datetime) -> datetime:
    """The first fire instant strictly after ``after``."""
    for days in (1, 32, 366, 366 * 8 + 1):  # 8 years covers a 29 February that must also be a weekday
        ticks = ticks_between(entry, after, after + timedelta(days=days))
        if ticks:
            return ticks[0]
    raise errors.ConfigurationError(f"{entry.source}: cron {entry.cron!r} never fires")


def describe(entries: Iterable[ScheduleEntry]) -> list[dict[str, Any]]:
    """A JSON-ready summary, for logs and ``--json`` output."""
    return [
        {"id": e.id, "task": e.task, "cron": e.cron, "timezone": e.timezone, "backfill": str(e.backfill or "")}
        for e in entries
    ]
