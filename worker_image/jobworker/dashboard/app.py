"""``jobworker dashboard``: an aiohttp app with server-rendered pages, read-only unless told otherwise.

Safety, in the order a request meets it:

1. Who: with ``token`` set, a request needs ``Authorization: Bearer <token>`` or the cookie the login
   form sets; with ``trust_header`` set (behind oauth2-proxy, say), the user is that header's value and
   a request without it is refused. Neither set: anyone who reaches the port may read, nobody may act.
2. What: actions exist only with ``allow_actions`` (which needs a token or a trusted header). Without it
   the action routes answer 403, the pages show no buttons, and the database sessions are read-only.
3. CSRF: every POST must carry ``csrf_token``, an HMAC of the user under a per-process secret.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import logging
import secrets
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from aiohttp import web

from jobworker import crontab, db, errors
from jobworker.dashboard import pages
from jobworker.dashboard.actions import ACTIONS, Actions
from jobworker.dashboard.store import STATES, DashboardStore, JobFilter
from jobworker.durations import parse_duration
from jobworker.worker_utils import WorkerUtils

log = logging.getLogger("jobworker.dashboard")
COOKIE = "jobworker_dashboard"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, kw_only=True)
class DashboardSettings:
    database_url: str
    schema: str = db.DEFAULT_SCHEMA
    allow_actions: bool = False
    token: str | None = None
    trust_header: str | None = None
    hide_payloads: bool = False
    base_path: str = ""
    """The prefix the app is mounted under (``/jobs``), for its links; empty at the root."""
    refresh: float = 2.0
    stale_after: float = 300.0
    schedules: tuple[crontab.ScheduleEntry, ...] = ()
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def __post_init__(self) -> None:
        if self.allow_actions and not (self.token or self.trust_header):
            raise errors.ConfigurationError(
                "--allow-actions needs a way to know who acts: pass --token (or set JOBWORKER_DASHBOARD_TOKEN) "
                "or --trust-header X-Forwarded-User behind an authenticating proxy"
            )
        if self.base_path and (not self.base_path.startswith("/") or self.base_path.endswith("/")):
            raise errors.ConfigurationError(f"--base-path: {self.base_path!r} must start with / and not end with /")
        if self.refresh <= 0:
            raise errors.ConfigurationError("--refresh: must be more than 0 seconds")


KEY: web.AppKey[Dashboard] = web.AppKey("dashboard")


class Dashboard:
    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self.store = DashboardStore(
            settings.database_url,
            settings.schema,
            read_only=not settings.allow_actions,
            refresh=settings.refresh,
            stale_after=settings.stale_after,
        )
        self.utils = WorkerUtils(settings.database_url, settings.schema) if settings.allow_actions else None
        self.actions = Actions(self.utils, self.store) if self.utils is not None else None

    # -- who and what -----------------------------------------------------------------------------
    def actor(self, request: web.Request) -> str | None:
        s = self.settings
        if s.trust_header:
            return request.headers.get(s.trust_header) or None
        if s.token:
            auth = request.headers.get("Authorization", "")
            if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].encode(), s.token.encode()):
                return "bearer-token"
            if hmac.compare_digest(request.cookies.get(COOKIE, ""), self._session_value()):
                return "token-login"
        return None

    def _session_value(self) -> str:
        return hmac.new(
            self.settings.secret, b"session:" + (self.settings.token or "").encode(), hashlib.sha256
        ).hexdigest()

    def csrf(self, actor: str | None) -> str:
        return hmac.new(self.settings.secret, b"csrf:" + (actor or "").encode(), hashlib.sha256).hexdigest()

    def view(self, request: web.Request) -> pages.View:
        actor = self.actor(request)
        return pages.View(
            base=self.settings.base_path,
            actions=self.settings.allow_actions,
            csrf=self.csrf(actor),
            actor=actor,
            hide_payloads=self.settings.hide_payloads,
            refresh=self.settings.refresh,
        )


def html(body: str, status: int = 200) -> web.Response:
    return web.Response(
        text=body,
        status=status,
        content_type="text/html",
        headers={
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "same-origin",
            "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
        },
    )


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authentication, then CSRF for every POST, then errors as pages."""
    dash = request.app[KEY]
    s = dash.settings
    resource = request.match_info.route.resource
    if resource is not None and resource.name in ("static", "login", "healthz"):
        return await handler(request)
    actor = dash.actor(request)
    view = dash.view(request)
    if actor is None and (s.token or s.trust_header):
        if s.token and request.method == "GET":
            raise web.HTTPSeeOther(f"{s.base_path}/login")
        who = f"the {s.trust_header} header" if s.trust_header else "a valid token"
        return html(pages.error(view, 401, f"sign in first: this dashboard needs {who}"), 401)
    if request.method == "POST":
        if not s.allow_actions:
            return html(pages.error(view, 403, "actions are disabled: this dashboard is read-only"), 403)
        form = await request.post()
        sent = str(form.get("csrf_token") or request.headers.get("X-CSRF-Token") or "")
        if not hmac.compare_digest(sent.encode(), dash.csrf(actor).encode()):
            log.warning("dashboard refused a POST to %s without a valid CSRF token (user %s)", request.path, actor)
            return html(
                pages.error(view, 403, "refused: the form's CSRF token is missing or wrong; reload the page"), 403
            )
    try:
        return await handler(request)
    except errors.ConfigurationError as exc:
        return html(pages.error(view, 400, str(exc)), 400)
    except errors.DatabaseError as exc:
        return html(pages.error(view, 503, str(exc)), 503)


# -- pages ----------------------------------------------------------------------------------------
async def healthz(request: web.Request) -> web.Response:
    """For probes: answers without sign-in and without touching the database."""
    return web.json_response({"status": "ok"})


async def overview(request: web.Request) -> web.Response:
    dash = request.app[KEY]
    exact = request.query.get("exact") == "1"
    snap = await (dash.store.exact_counts() if exact else dash.store.overview())
    return html(pages.overview(dash.view(request), snap))


async def overview_partial(request: web.Request) -> web.Response:
    dash = request.app[KEY]
    return html(pages.overview_live(await dash.store.overview(), dash.settings.base_path))


def _opt(request: web.Request, name: str) -> str | None:
    value = request.query.get(name, "").strip()
    return value or None


async def jobs_page(request: web.Request) -> web.Response:
    dash = request.app[KEY]
    state = _opt(request, "state")
    if state is not None and state not in STATES:
        raise errors.ConfigurationError(f"state: {state!r} is not one of {', '.join(STATES)}")
    before = _int(_opt(request, "before"), "before")
    f = JobFilter(state, _opt(request, "task"), _opt(request, "queue"), _opt(request, "key"), _opt(request, "error"))
    found = await dash.store.list_jobs(f, before=before, limit=pages_size(request) + 1)
    size = pages_size(request)
    next_before = found[size - 1].id if len(found) > size else None
    tasks, queues = await dash.store.filter_options()
    return html(pages.jobs(dash.view(request), f, found[:size], tasks, queues, next_before))


def pages_size(request: web.Request) -> int:
    size = _int(_opt(request, "limit"), "limit") or 50
    if not 1 <= size <= 500:
        raise errors.ConfigurationError("limit: must be from 1 to 500")
    return size


def _int(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise errors.ConfigurationError(f"{name}: {value!r} is not a whole number") from None


async def job_page(request: web.Request) -> web.Response:
    dash = request.app[KEY]
    job_id = _int(request.match_info["id"], "job id")
    found = await dash.store.job(job_id or 0)
    if found is None:
        return html(pages.error(dash.view(request), 404, f"no job with id {job_id} (it may have completed)"), 404)
    return html(pages.job(dash.view(request), found))


async def failures_page(request: web.Request) -> web.Response:
    dash = request.app[KEY]
    return html(pages.failures(dash.view(request), await dash.store.failure_groups()))


async def workers_page(request: web.Request) -> web.Response:
    dash = request.app[KEY]
    found, unregistered = await dash.store.workers(), await dash.store.unregistered_locks()
    return html(pages.workers(dash.view(request), found, unregistered, dash.settings.stale_after))


async def queues_page(request: web.Request) -> web.Response:
    dash = request.app[KEY]
    return html(pages.queues(dash.view(request), await dash.store.queues()))


async def schedules_page(request: web.Request) -> web.Response:
    dash = request.app[KEY]
    known = {r.identifier: r for r in await dash.store.schedules()}
    now = datetime.now(UTC)
    rows = []
    for e in dash.settings.schedules:
        r = known.pop(e.id, None)
        rows.append(
            pages.ScheduleRow(
                e.id,
                e.task,
                e.cron,
                e.timezone,
                crontab.next_tick(e, now),
                r.known_since if r else None,
                r.last_execution if r else None,
            )
        )
    for ident, seen in sorted(known.items()):  # seen by a scheduler, but not in this dashboard's definitions
        rows.append(pages.ScheduleRow(ident, None, None, None, None, seen.known_since, seen.last_execution))
    return html(pages.schedules(dash.view(request), rows, bool(dash.settings.schedules)))


async def login(request: web.Request) -> web.Response:
    dash = request.app[KEY]
    view = dash.view(request)
    base = dash.settings.base_path
    message = ""
    if request.method == "POST" and dash.settings.token:
        form = await request.post()
        if hmac.compare_digest(str(form.get("token", "")).encode(), dash.settings.token.encode()):
            response = web.HTTPSeeOther(f"{base}/")
            response.set_cookie(
                COOKIE,
                dash._session_value(),
                httponly=True,
                samesite="Strict",
                path=f"{base}/",
                # Behind TLS termination (a proxy, or the ASGI adapter's socket hop) the hop itself is plain.
                secure=request.secure or request.headers.get("X-Forwarded-Proto") == "https",
            )
            raise response
        message = '<p class="error" role="alert">That token is not valid.</p>'
    form_html = (
        f'{message}<form method="post" action="{base}/login" class="actions"><label>Token'
        '<input type="password" name="token" autocomplete="current-password" required></label>'
        '<button type="submit">Sign in</button></form>'
    )
    return html(pages.layout(view, "", "Sign in", form_html))


# -- actions --------------------------------------------------------------------------------------
async def action(request: web.Request) -> web.Response:
    dash = request.app[KEY]
    name = request.match_info["name"]
    if name not in ACTIONS or dash.actions is None:
        raise web.HTTPNotFound()
    form = await request.post()
    view = dash.view(request)
    actor = str(view.actor)
    ids = sorted({i for i in (_int(str(v), "job_id") for v in form.getall("job_id", [])) if i is not None})
    confirmed = form.get("confirm") == "yes"
    acts = dash.actions
    if name in ("run_now", "priority", "fail", "complete", "requeue") and not ids:
        raise errors.ConfigurationError("job_id: choose at least one job (tick its box), then the action")
    if not confirmed:
        hidden = [(k, str(v)) for k, v in form.items() if k not in ("csrf_token", "confirm")]
        extra = ""
        what = f"{len(ids)} job(s): {', '.join(map(str, ids[:50]))}" if ids else ""
        if name == "priority":
            hidden = [h for h in hidden if h[0] != "priority"]
            extra = (
                '<label>New priority (lower runs first)<input name="priority" type="number" value="0" required></label>'
            )
        if name == "fail":
            hidden = [h for h in hidden if h[0] != "reason"]
            extra = '<label>Reason (becomes the last error)<input name="reason" required></label>'
        if name == "delete_key":
            what = f"the job with key {pages.esc(form.get('job_key', ''))}"
        if name == "retry_group":
            what = f"the jobs of task {pages.esc(form.get('task'))} failing with {pages.esc(form.get('first_line'))}"
        if name == "sweep":
            threshold = str(form.get("threshold") or "5m")
            dry = await acts.sweep(actor, threshold=_threshold(threshold), dry_run=True)
            what = f"dry run: {pages.esc(dry.message)}" + (
                f" (stale: {pages.esc(', '.join(dry.sweep.stale_workers))}; unregistered: "
                f"{pages.esc(', '.join(dry.sweep.orphan_lock_holders))})"
                if dry.sweep
                else ""
            )
        summary = f"{pages.esc(ACTIONS[name])} {what}. Running jobs are left alone."
        return html(pages.confirm(view, name, summary, hidden, extra))
    if name == "run_now":
        outcome = await acts.run_now(actor, ids)
    elif name == "priority":
        outcome = await acts.change_priority(actor, ids, _int(str(form.get("priority", "")), "priority") or 0)
    elif name == "fail":
        outcome = await acts.fail(actor, ids, str(form.get("reason", "")))
    elif name == "complete":
        outcome = await acts.complete(actor, ids)
    elif name == "requeue":
        outcome = await acts.requeue(actor, ids)
    elif name == "delete_key":
        outcome = await acts.delete_key(actor, str(form.get("job_key", "")).strip())
    elif name == "retry_group":
        outcome = await acts.retry_group(actor, str(form.get("task", "")), str(form.get("first_line", "")))
    else:
        outcome = await acts.sweep(actor, threshold=_threshold(str(form.get("threshold") or "5m")), dry_run=False)
    return html(pages.result(view, outcome))


def _threshold(text: str) -> str:
    parse_duration(text, field="threshold")  # a clear error before the sweep runs
    return text


# -- assembly -------------------------------------------------------------------------------------
def create_app(settings: DashboardSettings) -> web.Application:
    """The dashboard as an aiohttp app; mount it with ``root.add_subapp(settings.base_path, app)``."""
    dash = Dashboard(settings)
    app = web.Application(middlewares=[guard], client_max_size=256 * 1024)
    app[KEY] = dash

    async def start(_: web.Application) -> None:
        await dash.store.open()

    async def stop(_: web.Application) -> None:
        await dash.store.close()
        if dash.utils is not None:
            await dash.utils.close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    r = app.router
    r.add_get("/healthz", healthz, name="healthz")
    r.add_get("/", overview, name="overview")
    r.add_get("/partials/overview", overview_partial, name="overview_partial")
    r.add_get("/jobs", jobs_page, name="jobs")
    r.add_get("/jobs/{id}", job_page, name="job")
    r.add_get("/failures", failures_page, name="failures")
    r.add_get("/workers", workers_page, name="workers")
    r.add_get("/queues", queues_page, name="queues")
    r.add_get("/schedules", schedules_page, name="schedules")
    r.add_route("*", "/login", login, name="login")
    r.add_post("/actions/{name}", action, name="action")
    static = Path(str(resources.files("jobworker.dashboard").joinpath("static")))
    r.add_static("/static", static, name="static")
    return app


def root_app(settings: DashboardSettings) -> web.Application:
    """The dashboard at ``settings.base_path`` (itself when empty)."""
    app = create_app(settings)
    if not settings.base_path:
        return app
    root = web.Application()
    root.add_subapp(settings.base_path, app)
    return root


def settings_from_args(args: argparse.Namespace) -> DashboardSettings:
    import os

    entries: list[crontab.ScheduleEntry] = []
    if args.tasks or args.schedules:
        from jobworker.registry import JobRegistry, load_registry
        from jobworker.scheduler import collect_entries

        registry = load_registry(args.tasks) if args.tasks else JobRegistry()
        entries = collect_entries(registry, args.schedules)
    return DashboardSettings(
        database_url=db.resolve_database_url(args.database_url),
        schema=db.resolve_schema(args.schema),
        allow_actions=args.allow_actions and not args.read_only,
        token=args.token or os.environ.get("JOBWORKER_DASHBOARD_TOKEN") or None,
        trust_header=args.trust_header,
        hide_payloads=args.hide_payloads,
        base_path=(args.base_path or "").rstrip("/"),
        refresh=parse_duration(args.refresh, field="--refresh").total_seconds(),
        stale_after=parse_duration(args.stale_after, field="--stale-after").total_seconds(),
        schedules=tuple(entries),
        # Replicas behind one load balancer must share it, or a form from one is refused by another.
        **({"secret": shared.encode()} if (shared := os.environ.get("JOBWORKER_DASHBOARD_SECRET")) else {}),
    )


async def main(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    runner = web.AppRunner(root_app(settings), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, args.host, args.port).start()
        mode = "actions enabled" if settings.allow_actions else "read-only"
        print(f"jobworker dashboard ({mode}) on http://{args.host}:{args.port}{settings.base_path}/", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0
