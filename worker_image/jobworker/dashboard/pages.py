"""Server-rendered HTML for each page. Every value goes through ``esc``; no page needs JavaScript to work."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from importlib import resources
from string import Template
from urllib.parse import urlencode

from jobworker.dashboard import queries as q
from jobworker.dashboard.actions import ACTIONS, Outcome
from jobworker.dashboard.store import STATES, JobFilter, Overview

PAGES = (
    ("", "Overview"),
    ("jobs", "Jobs"),
    ("failures", "Failures"),
    ("workers", "Workers"),
    ("queues", "Queues"),
    ("schedules", "Schedules"),
)
PAYLOAD_CAP = 64 * 1024
"""Bytes of payload a job page shows; the rest is cut, so a huge payload cannot stall the browser."""
_LAYOUT = Template(resources.files("jobworker.dashboard").joinpath("templates/layout.html").read_text())


def esc(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


@dataclass(frozen=True)
class View:
    """What every page needs to know about the request: where it is mounted and what the user may do."""

    base: str
    actions: bool
    csrf: str
    actor: str | None
    hide_payloads: bool
    refresh: float


def layout(view: View, current: str, title: str, body: str) -> str:
    current_attr = ' aria-current="page"'
    nav = "".join(
        f'<li><a href="{esc(view.base)}/{path}"{current_attr if path == current else ""}>{label}</a></li>'
        for path, label in PAGES
    )
    mode = "actions enabled" if view.actions else "read-only"
    footer = f"signed in as {esc(view.actor)}" if view.actor else "jobworker dashboard"
    return _LAYOUT.substitute(
        title=esc(title), base=esc(view.base), nav=nav, body=body, mode=mode, footer=footer, refresh=view.refresh
    )


def when(value: datetime | None) -> str:
    if value is None:
        return '<span class="muted">-</span>'
    return f'<time datetime="{esc(value.isoformat())}">{esc(value.strftime("%Y-%m-%d %H:%M:%S %Z"))}</time>'


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    value = max(0.0, value)
    if value < 120:
        return f"{value:.0f}s"
    if value < 7200:
        return f"{value / 60:.0f}m"
    if value < 172800:
        return f"{value / 3600:.1f}h"
    return f"{value / 86400:.1f}d"


def table(caption: str, headers: Sequence[str], rows: Iterable[Sequence[str]], *, numeric: Sequence[int] = ()) -> str:
    head = "".join(f'<th scope="col"{" class=num" if i in numeric else ""}>{h}</th>' for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f"<td{' class=num' if i in numeric else ''}>{c}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    if not body:
        body = f'<tr><td colspan="{len(headers)}" class="muted">none</td></tr>'
    return (
        f'<div class="scroll"><table><caption>{caption}</caption><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def csrf_field(view: View) -> str:
    return f'<input type="hidden" name="csrf_token" value="{esc(view.csrf)}">'


def action_button(view: View, action: str, hidden: dict[str, object], *, label: str | None = None) -> str:
    """A small form posting to the action's confirmation step (nothing changes until confirmed)."""
    if not view.actions:
        return ""
    fields = "".join(f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in hidden.items())
    danger = " danger" if action in ("fail", "complete", "delete_key", "sweep") else ""
    return (
        f'<form method="post" action="{esc(view.base)}/actions/{action}" class="inline">{csrf_field(view)}{fields}'
        f'<button type="submit" class="{danger.strip()}">{esc(label or ACTIONS[action])}</button></form>'
    )


# -- overview -------------------------------------------------------------------------------------
def overview(view: View, snap: Overview) -> str:
    if snap.counted_in_ms is not None:  # an exact count on request: a still picture, not polled
        return layout(view, "", "Overview", f'<div id="counted">{overview_live(snap, view.base)}</div>')
    live = f'<div id="live" data-live="/partials/overview">{overview_live(snap, view.base)}</div>'
    return layout(view, "", "Overview", live)


def overview_live(snap: Overview, base: str) -> str:
    approx = "≈" if snap.sampled_percent is not None else ""
    labels = {
        "ready": "Ready",
        "scheduled": "Scheduled",
        "retrying": "Retrying",
        "running": "Running",
        "failed": "Failed permanently",
    }
    kind = " (estimated)" if approx else ""
    cards = "".join(
        f'<div><dt>{labels[s]}{kind}</dt><dd data-state="{s}">{approx}{snap.total(s):,}</dd></div>' for s in STATES
    )
    cards += f"<div><dt>Oldest waiting</dt><dd data-oldest>{seconds(snap.oldest_waiting_seconds)}</dd></div>"
    cards += f"<div><dt>Live workers</dt><dd data-workers-live>{snap.workers_live}</dd></div>"
    cards += f"<div><dt>Stale workers</dt><dd>{snap.workers_stale}</dd></div>"
    note = ""
    if snap.sampled_percent is not None:
        scale = 100 / snap.sampled_percent
        note = (
            f'<p class="notice" role="note" data-estimated><strong>Estimated counts.</strong> Counting every row of '
            "a table this large takes about a second, too slow to repeat at every refresh, and PostgreSQL keeps no "
            f"count per state. So these are scaled up from a {snap.sampled_percent:.2g}% block sample: each sampled "
            f"job stands for about {scale:,.0f}, and a rare state can show ≈0. The oldest waiting age and the workers "
            f'are exact, and the Workers page lists every running job. <a href="{esc(base)}/?exact=1">Count exactly'
            "</a> (one full scan, shown as a still picture, reused for 30 s).</p>"
        )
    elif snap.counted_in_ms is not None:
        note = (
            f'<p class="notice" role="note" data-exact>Every row counted at {when(snap.taken_at)} in '
            f"{snap.counted_in_ms:,.0f} ms. This view does not refresh. "
            f'<a href="{esc(base)}/">Back to the live estimate</a>.</p>'
        )
    by: dict[tuple[str, str | None], dict[str, int]] = {}
    for c in snap.counts:
        by.setdefault((c.task, c.queue), {})[c.state] = c.count
    rows = [
        [esc(task), esc(queue or "-"), *(f"{approx}{counts.get(s, 0):,}" for s in STATES)]
        for (task, queue), counts in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
    ]
    headers = ["Task", "Queue", *(labels[s] for s in STATES)]
    return (
        f'{note}<dl class="cards">{cards}</dl><h2>Throughput, last hour</h2>{chart(snap)}'
        f"<h2>By task and queue</h2>{table('Jobs per task, queue and state', headers, rows, numeric=range(2, 7))}"
        f'<p class="muted">Updated {when(snap.taken_at)}</p>'
    )


THROUGHPUT_SOURCE = (
    '<p class="muted" data-throughput-source>Counted by jobworker workers, which add their completed and failed '
    "jobs to the database with each heartbeat (every 15 s by default), so the hour survives a dashboard restart. "
    "graphile-worker in Node or Rust does not record them: jobs those run are missing from this chart.</p>"
)


def chart(snap: Overview) -> str:
    """Completed and failed jobs per minute over the last hour as an SVG bar chart (one slot per minute,
    now at the right), with the same numbers in a table for screen readers."""
    now = snap.taken_at.replace(second=0, microsecond=0)
    slot = {now - timedelta(minutes=59 - i): i for i in range(60)}
    completed, failed = [0] * 60, [0] * 60
    for minute, n in snap.completed_per_minute:
        if minute in slot:
            completed[slot[minute]] += n
    for minute, n in snap.failed_per_minute:
        if minute in slot:
            failed[slot[minute]] += n
    if not snap.throughput_recorded:
        return (
            '<p class="muted">No throughput history: this schema has no _private_jobworker_throughput table yet. '
            "Run <code>jobworker migrate</code> (non-breaking) and jobworker workers start recording.</p>"
        )
    if not any(completed) and not any(failed):
        return f'<p class="muted">No completed or failed jobs in the last hour.</p>{THROUGHPUT_SOURCE}'
    top = max(c + f for c, f in zip(completed, failed, strict=True))
    width, height, bar = 600, 120, 10
    bars = []
    for i, (c, f) in enumerate(zip(completed, failed, strict=True)):
        c_h, f_h = height * c / top, height * f / top
        bars.append(
            f'<rect class="completed" x="{i * bar}" y="{height - c_h:.1f}" width="{bar - 1}" height="{c_h:.1f}"/>'
        )
        bars.append(
            f'<rect class="failed" x="{i * bar}" y="{height - c_h - f_h:.1f}" width="{bar - 1}" height="{f_h:.1f}"/>'
        )
    svg = (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="Jobs per minute over the last '
        f'hour: {sum(completed)} completed and {sum(failed)} failed">{"".join(bars)}</svg>'
    )
    legend = (
        f'<p class="muted">60 minutes ago … now (UTC). Blue: completed. Red: failed. Tallest bar: {top}.</p>'
        + THROUGHPUT_SOURCE
    )
    rows = [
        [when(now - timedelta(minutes=59 - i)), str(completed[i]), str(failed[i])]
        for i in range(60)
        if completed[i] or failed[i]
    ][-10:]
    detail = table("Latest minutes with activity", ["Minute", "Completed", "Failed"], rows, numeric=(1, 2))
    return f"{svg}{legend}<details><summary>Numbers</summary>{detail}</details>"


# -- jobs -----------------------------------------------------------------------------------------
def _select(name: str, label: str, options: Sequence[str], chosen: str | None) -> str:
    opts = '<option value="">any</option>' + "".join(
        f'<option value="{esc(o)}"{" selected" if o == chosen else ""}>{esc(o)}</option>' for o in options
    )
    return f'<label>{label}<select name="{name}">{opts}</select></label>'


def jobs(
    view: View,
    f: JobFilter,
    found: list[q.JobRow],
    tasks: list[str],
    queues: list[str],
    next_before: int | None,
    flash: str = "",
) -> str:
    filters = (
        f'<form class="filters" method="get" action="{esc(view.base)}/jobs">'
        + _select("state", "State", STATES, f.state)
        + _select("task", "Task", tasks, f.task)
        + _select("queue", "Queue", queues, f.queue_name)
        + f'<label>Key<input name="key" value="{esc(f.key or "")}"></label>'
        + f'<label>Error contains<input name="error" value="{esc(f.error or "")}"></label>'
        + '<button type="submit">Filter</button></form>'
    )
    select_all = '<input type="checkbox" data-select-all aria-label="Select all jobs on this page">'
    headers = ([select_all] if view.actions else []) + [
        "ID",
        "State",
        "Task",
        "Queue",
        "Attempts",
        "Priority",
        "Run at",
        "Key",
        "Last error",
    ]
    rows = []
    for j in found:
        first = (j.last_error or "").split("\n", 1)[0][:120]
        cells = [
            f'<a href="{esc(view.base)}/jobs/{j.id}">{j.id}</a>',
            f'<span class="state-{j.state}">{j.state}</span>',
            esc(j.task_identifier),
            esc(j.queue_name or "-"),
            f"{j.attempts}/{j.max_attempts}",
            str(j.priority),
            when(j.run_at),
            esc(j.key or ""),
            esc(first),
        ]
        if view.actions:
            box = f'<input type="checkbox" name="job_id" value="{j.id}" aria-label="Select job {j.id}">'
            cells.insert(0, box)
        rows.append(cells)
    listing = table(f"{len(found)} job(s), newest first", headers, rows)
    if view.actions:
        buttons = "".join(
            f'<button type="submit" formaction="{esc(view.base)}/actions/{a}"'
            f"{' class=danger' if a in ('fail', 'complete') else ''}>{ACTIONS[a]}</button>"
            for a in ("run_now", "priority", "fail", "complete", "requeue")
        )
        listing = (
            f'<form method="post" action="{esc(view.base)}/actions/run_now" id="bulk">{csrf_field(view)}'
            f'<div class="actions">{buttons}<span class="muted">Each asks for confirmation; running jobs are '
            f"skipped.</span></div>{listing}</form>"
        )
    pager = ""
    if next_before is not None:
        params = {
            k: v
            for k, v in (
                ("state", f.state),
                ("task", f.task),
                ("queue", f.queue_name),
                ("key", f.key),
                ("error", f.error),
            )
            if v
        }
        params["before"] = str(next_before)
        pager = f'<p><a rel="next" href="{esc(view.base)}/jobs?{esc(urlencode(params))}">Older jobs</a></p>'
    delete = ""
    if view.actions:
        delete = (
            f'<h2>Delete by key</h2><form method="post" action="{esc(view.base)}/actions/delete_key" class="actions">'
            f'{csrf_field(view)}<label>Job key<input name="job_key" required></label>'
            '<button type="submit" class="danger">Delete by key</button></form>'
        )
    return layout(view, "jobs", "Jobs", flash + filters + listing + pager + delete)


def job(view: View, j: q.JobDetail) -> str:
    if view.hide_payloads:
        payload = '<p class="muted">Payloads are hidden (--hide-payloads).</p>'
    else:
        text = j.payload_text or ""
        cut = len(text.encode()) > PAYLOAD_CAP
        try:
            pretty = json.dumps(json.loads(text), indent=2, ensure_ascii=False) if not cut else text[:PAYLOAD_CAP]
        except ValueError:
            pretty = text
        note = f'<p class="muted">Showing the first {PAYLOAD_CAP // 1024} KiB of {j.payload_bytes:,} bytes.</p>'
        payload = f"<pre>{esc(pretty)}</pre>" + (note if cut else "")
    lock = "-"
    if j.locked_by:
        owner = "registered worker" if j.lock_owner_registered else "unregistered owner (Node or Rust worker?)"
        lock = f"{esc(j.locked_by)} ({owner}) for {seconds(j.locked_seconds)}"
    fields = [
        ("State", f'<span class="state-{j.state}">{j.state}</span>'),
        ("Task", esc(j.task_identifier)),
        ("Queue", esc(j.queue_name or "-")),
        ("Attempts", f"{j.attempts} of {j.max_attempts}"),
        ("Run at", when(j.run_at)),
        ("Priority", str(j.priority)),
        ("Flags", esc(", ".join(sorted(j.flags)) if j.flags else "-")),
        ("Key", esc(j.key or "-")),
        ("Revision", str(j.revision)),
        ("Locked by", lock),
        ("Created", when(j.created_at)),
        ("Updated", when(j.updated_at)),
    ]
    dl = '<dl class="fields">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in fields) + "</dl>"
    err = f"<h2>Last error</h2><pre>{esc(j.last_error)}</pre>" if j.last_error else ""
    acts = ""
    if view.actions and j.state != "running":
        ids: dict[str, object] = {"job_id": j.id}
        acts = '<h2>Actions</h2><div class="actions">' + "".join(
            action_button(view, a, ids) for a in ("run_now", "priority", "fail", "complete")
        )
        if j.state == "failed":
            acts += action_button(view, "requeue", ids)
        acts += "</div>"
    elif view.actions:
        acts = '<p class="muted">This job is running; the dashboard does not act on running jobs.</p>'
    return layout(view, "jobs", f"Job {j.id}", dl + acts + "<h2>Payload</h2>" + payload + err)


# -- confirmation and results ---------------------------------------------------------------------
def confirm(view: View, action: str, summary: str, hidden: list[tuple[str, str]], extra: str = "") -> str:
    fields = "".join(f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in hidden)
    body = (
        f'<p>{summary}</p><form method="post" action="{esc(view.base)}/actions/{action}">{csrf_field(view)}'
        f'{fields}<input type="hidden" name="confirm" value="yes">{extra}<div class="actions">'
        f'<button type="submit" class="danger">Confirm: {esc(ACTIONS[action])}</button>'
        f'<a href="{esc(view.base)}/jobs">Cancel</a></div></form>'
    )
    return layout(view, "", f"Confirm: {ACTIONS[action]}", body)


def result(view: View, outcome: Outcome) -> str:
    body = f'<p class="notice" role="status">{esc(outcome.message)}</p>'
    if outcome.done:
        links = ", ".join(f'<a href="{esc(view.base)}/jobs/{i}">{i}</a>' for i in outcome.done[:100])
        body += f"<p>Jobs: {links}</p>"
    body += f'<p><a href="{esc(view.base)}/jobs">Back to jobs</a></p>'
    return layout(view, "", f"Done: {ACTIONS[outcome.action]}", body)


def error(view: View, status: int, message: str) -> str:
    return layout(view, "", f"Error {status}", f'<p class="error" role="alert">{esc(message)}</p>')


# -- failures, workers, queues, schedules ---------------------------------------------------------
def failures(view: View, groups: list[q.FailureGroup]) -> str:
    rows = []
    for g in groups:
        params = urlencode({"state": "", "task": g.task_identifier, "error": g.first_line})
        rows.append(
            [
                esc(g.task_identifier),
                f'<a href="{esc(view.base)}/jobs?{esc(params)}"><code>{esc(g.first_line[:200])}</code></a>',
                str(g.failed),
                str(g.retrying),
                when(g.last_seen),
                action_button(view, "retry_group", {"task": g.task_identifier, "first_line": g.first_line}),
            ]
        )
    headers = ["Task", "First line of the error", "Failed", "Retrying", "Last seen", "" if view.actions else "-"]
    listing = table("Failed and retrying jobs by task and error", headers, rows, numeric=(2, 3))
    return layout(view, "failures", "Failures", listing)


def workers(view: View, found: list[q.WorkerRow], unregistered: list[q.UnregisteredLock], stale_after: float) -> str:
    rows = []
    for w in found:
        age = float(w.heartbeat_age_seconds)
        status = "stale" if age > stale_after else "live"
        running = ", ".join(
            f'<a href="{esc(view.base)}/jobs/{r["id"]}">{r["id"]}</a> {esc(r["task"])} ({seconds(r["seconds"])})'
            for r in w.running
        )
        rows.append(
            [
                esc(w.id),
                f'<span class="state-{"failed" if status == "stale" else "running"}">{status}</span>',
                when(w.last_heartbeat_at),
                seconds(age),
                when(w.started_at),
                running or "-",
            ]
        )
    registered = table(
        f"Registered workers (stale after {seconds(stale_after)} without a heartbeat)",
        ["Worker", "Status", "Last heartbeat", "Age", "Started", "Running (held for)"],
        rows,
    )
    orphan_rows = [[esc(u.locked_by), str(u.jobs), str(u.queues), seconds(u.oldest_lock_seconds)] for u in unregistered]
    orphans = table(
        "Locks held by unregistered owners (graphile-worker in Node or Rust, or a worker already swept)",
        ["Lock holder", "Jobs", "Queues", "Oldest lock"],
        orphan_rows,
        numeric=(1, 2),
    )
    sweep = ""
    if view.actions:
        sweep = (
            f'<h2>Sweep</h2><form method="post" action="{esc(view.base)}/actions/sweep" class="actions">'
            f'{csrf_field(view)}<label>Dead after<input name="threshold" value="{esc(seconds(stale_after))}"></label>'
            '<button type="submit" class="danger">Sweep stale workers (dry run first)</button></form>'
        )
    return layout(view, "workers", "Workers", registered + "<h2>Unregistered lock holders</h2>" + orphans + sweep)


def queues(view: View, found: list[q.QueueRow]) -> str:
    rows = [
        [
            f'<a href="{esc(view.base)}/jobs?{esc(urlencode({"queue": row.queue_name}))}">{esc(row.queue_name)}</a>',
            esc(row.locked_by or "-"),
            seconds(row.locked_seconds) if row.locked_by else "-",
            str(row.depth),
            str(row.due),
        ]
        for row in found
    ]
    headers = ["Queue", "Locked by", "Locked for", "Depth", "Due now"]
    listing = table("Named queues (each runs one job at a time)", headers, rows, numeric=(3, 4))
    return layout(view, "queues", "Queues", listing)


@dataclass(frozen=True)
class ScheduleRow:
    id: str
    task: str | None
    cron: str | None
    timezone: str | None
    next_fire: datetime | None
    known_since: datetime | None
    last_execution: datetime | None


def schedules(view: View, found: list[ScheduleRow], configured: bool) -> str:
    rows = [
        [
            esc(s.id),
            esc(s.task or "-"),
            f"<code>{esc(s.cron or '-')}</code>",
            esc(s.timezone or "-"),
            when(s.next_fire),
            when(s.last_execution),
            when(s.known_since),
        ]
        for s in found
    ]
    note = (
        ""
        if configured
        else '<p class="muted">Cron, time zone and next fire time come from the schedule definitions: start the '
        "dashboard with <code>--schedules FILE</code> (and/or <code>--tasks MODULE</code>) to show them.</p>"
    )
    headers = ["Schedule", "Task", "Cron", "Time zone", "Next fire", "Last fired tick", "Known since"]
    return layout(view, "schedules", "Schedules", note + table("Schedules", headers, rows))
