"""The HTTP job endpoint QStash delivers to: ``POST /v1/jobs/run/{name}``, ``/healthz`` and ``/metrics``.

``create_app`` gives an aiohttp application (run it with ``jobworker serve``, or mount it in your own
app with ``app.add_subapp("/jobs", create_app(...))``); ``asgi_app`` serves the same routes to an ASGI
framework. Both hand each request to one ``Receiver``, so the rules below hold under either:

* at most ``max_concurrency`` deliveries are handled at once; the next gets 503 with Retry-After at once;
* the signature is checked before a byte of the body is read (signatures.py). Only then is the body
  streamed through SHA-256, within ``body_timeout``, and checked against the ``body`` claim;
* each signature runs at most once: its ``jti`` is recorded until it expires (replay.py: in memory, or in
  a table shared by every replica), and a second use gets 409 without running the handler; when it
  cannot be recorded (that table is down), 503 with Retry-After, and the handler does not run;
* the callback URL must be https:// (plain http:// only for localhost): the headers QStash adds
  (message id, attempt, max attempts, job key) are not signed, see docs/qstash-endpoint.md;
* 401 for a bad signature; 489 with ``Upstash-NonRetryable-Error: true`` when retrying cannot help
  (unknown job, invalid payload, attempts exhausted, PermanentJobError, a body over ``max_body_bytes``);
  408 when the body does not arrive within ``body_timeout``; 503 with Retry-After for RetryJob; 500 for
  other failures, which QStash retries; 200 on success.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import math
import signal as os_signal
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import prometheus_client
from aiohttp import web
from multidict import CIMultiDict

from jobworker import db, errors, httpserver, metrics
from jobworker.config import QStashConfig
from jobworker.durations import parse_duration
from jobworker.jobs import AbortSignal, JobContext
from jobworker.registry import JobRegistry, load_registry

# Re-exported: these names were public here before replay.py and signatures.py split them out.
from jobworker.replay import MemorySeenTokens as MemorySeenTokens
from jobworker.replay import PostgresSeenTokens as PostgresSeenTokens
from jobworker.replay import SeenTokens as SeenTokens
from jobworker.settings import EndpointSettings
from jobworker.signatures import DEFAULT_CLOCK_TOLERANCE as DEFAULT_CLOCK_TOLERANCE
from jobworker.signatures import SignatureVerifier as SignatureVerifier
from jobworker.signatures import check_callback_url as check_callback_url

log = logging.getLogger("jobworker.endpoint")
_DEFAULTS = EndpointSettings()  # each default is written once, in settings.EndpointSettings
DEFAULT_MAX_BODY_BYTES = _DEFAULTS.max_body_bytes
DEFAULT_MAX_CONCURRENCY = _DEFAULTS.max_concurrency
DEFAULT_BODY_TIMEOUT = _DEFAULTS.body_timeout
BUSY_RETRY_AFTER = 1
REPLAY_STORE_RETRY_AFTER = 30
"""Retry-After (seconds) while the replay database is down: long enough for a restart or a failover, and
within QStash's own backoff (12 s, then 2.5 min, then 30 min between its default 3 retries)."""
NON_RETRYABLE = 489
ROUTE_PREFIX = "/v1/jobs/run/"
MAX_ATTEMPTS_HEADER = "Jobworker-Max-Attempts"
JOB_KEY_HEADER = "Jobworker-Job-Key"
"""Forwarded by the qstash provider (as ``Upstash-Forward-<name>``) so the context matches graphile's;
percent-encoded (``encode_header``), since a header carries ASCII only and a job key may not be ASCII."""


def encode_header(value: str) -> str:
    """``value`` as ASCII for a header; the endpoint decodes it with ``urllib.parse.unquote``."""
    return urllib.parse.quote(value, safe="")


RECEIVER: web.AppKey[Receiver] = web.AppKey("jobworker_receiver")


def default_seen_tokens(settings: EndpointSettings | None = None) -> SeenTokens:
    """The table at ``replay_database_url`` (env JOBWORKER_REPLAY_DATABASE_URL) when set, else this process's memory."""
    settings = settings or EndpointSettings.from_env()
    if not settings.replay_database_url:
        return MemorySeenTokens()
    url = db.check_database_url(settings.replay_database_url, "JOBWORKER_REPLAY_DATABASE_URL")
    return PostgresSeenTokens(url, db.resolve_schema(), timeout=settings.replay_timeout)


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def _error(status: int, code: str, message: str, **headers: str) -> Reply:
    return Reply(status, {"error": {"code": code, "message": message}}, dict(headers))


def _permanent(code: str, message: str) -> Reply:
    return _error(NON_RETRYABLE, code, message, **{"Upstash-NonRetryable-Error": "true"})


class BodyIncomplete(Exception):
    """The client went away before sending the whole body."""


Chunks = AsyncIterator[bytes]


class Receiver:
    """Bound, verify, read, route, validate and run one delivery. Framework-free, so aiohttp and ASGI share it."""

    def __init__(
        self,
        registry: JobRegistry,
        config: QStashConfig,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        clock_tolerance: float = DEFAULT_CLOCK_TOLERANCE,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        seen_tokens: SeenTokens | None = None,
    ) -> None:
        if not config.current_signing_key or not config.next_signing_key or not config.callback_url:
            raise errors.ConfigurationError(
                "the job endpoint needs QSTASH_CURRENT_SIGNING_KEY, QSTASH_NEXT_SIGNING_KEY and QSTASH_CALLBACK_URL"
            )
        check_callback_url(config.callback_url)
        if max_concurrency < 1:
            raise errors.ConfigurationError(f"max_concurrency: {max_concurrency!r} must be at least 1")
        if body_timeout <= 0:
            raise errors.ConfigurationError(f"body_timeout: {body_timeout!r} must be greater than 0 seconds")
        self.registry = registry
        self.config = config
        self.max_body_bytes = max_body_bytes
        self.max_concurrency = max_concurrency
        self.body_timeout = body_timeout
        self.verifier = SignatureVerifier(
            config.current_signing_key, config.next_signing_key, clock_tolerance=clock_tolerance
        )
        self.clock_tolerance = clock_tolerance
        self.owns_store = seen_tokens is None
        self.seen_tokens: SeenTokens = seen_tokens if seen_tokens is not None else default_seen_tokens()
        self.running: set[AbortSignal] = set()
        self.active = 0
        """Deliveries being handled now, from the first header to the reply."""

    def too_large(self) -> Reply:
        # Not 413: QStash retries every status but 2xx and 489, and a body this size never gets smaller.
        return _permanent("jobs.body_too_large", f"request body is over the limit of {self.max_body_bytes} bytes")

    def shutdown(self) -> None:
        for signal in list(self.running):
            signal.fire("endpoint is shutting down")

    async def close(self) -> None:
        """Close the replay store this receiver opened itself (one passed in belongs to the caller)."""
        if self.owns_store and isinstance(self.seen_tokens, PostgresSeenTokens):
            await self.seen_tokens.close()

    async def handle(self, name: str, headers: Mapping[str, str], content_length: int | None, chunks: Chunks) -> Reply:
        """One request: ``chunks`` yields the body and is not touched unless the signature holds."""
        if self.active >= self.max_concurrency:
            reply = _error(
                503,
                "jobs.busy",
                f"this endpoint is handling {self.active} deliveries, its max_concurrency; retry later",
                **{"Retry-After": str(BUSY_RETRY_AFTER)},
            )
        else:
            self.active += 1
            try:
                reply = await self._handle(name, headers, content_length, chunks)
            finally:
                self.active -= 1
        metrics.HTTP_DELIVERIES.labels(name if name in self.registry else "<unknown>", str(reply.status)).inc()
        return reply

    async def deliver(self, name: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """``handle`` for a body already in memory."""

        async def one() -> Chunks:
            yield body

        return await self.handle(name, headers, len(body), one())

    async def _handle(self, name: str, headers: Mapping[str, str], content_length: int | None, chunks: Chunks) -> Reply:
        token = headers.get("Upstash-Signature", "")
        try:
            if not token:
                raise errors.InvalidJobSignatureError("the Upstash-Signature header is missing")
            claims = self.verifier.authenticate(token, self.config.destination(name))
        except errors.InvalidJobSignatureError as exc:
            log.warning("rejected delivery for %r: %s", name, exc)
            return _error(401, errors.InvalidJobSignatureError.code, str(exc))
        if content_length is not None and content_length > self.max_body_bytes:
            return self.too_large()
        hasher = hashlib.sha256()
        parts: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_body_bytes:
                        return self.too_large()
                    hasher.update(chunk)
                    parts.append(chunk)
        except TimeoutError:
            return _error(408, "jobs.body_timeout", f"the body did not arrive within {self.body_timeout:g} s")
        except BodyIncomplete:
            return _error(400, "jobs.body_incomplete", "the client closed the connection before the body ended")
        try:
            self.verifier.check_body(claims, hasher.digest())
        except errors.InvalidJobSignatureError as exc:
            log.warning("rejected delivery for %r: %s", name, exc)
            return _error(401, errors.InvalidJobSignatureError.code, str(exc))
        # QStash signs every delivery attempt anew, so a token id seen before is a replay (or a proxy's
        # resend): never run it twice. 409 is retried, and QStash's retry carries a fresh signature.
        try:
            first = await self.seen_tokens.first_use(claims["jti"], float(claims["exp"]) + self.clock_tolerance)
        except Exception as exc:  # any store (a table, Redis): unknown means unproven fresh, so fail closed
            log.error("did not run a delivery for %r: could not record its signature: %s", name, exc)
            return _error(
                503,
                "jobs.replay_store_unavailable",
                "the replay store could not record this signature, so the delivery was not run; retry later",
                **{"Retry-After": str(REPLAY_STORE_RETRY_AFTER)},
            )
        if not first:
            log.warning("refused a replayed delivery for %r (jti %r)", name, claims["jti"])
            return _error(409, "jobs.replayed", "this signature was used before; a delivery runs once per signature")
        return await self._run(name, headers, b"".join(parts))

    async def _run(self, name: str, headers: Mapping[str, str], body: bytes) -> Reply:
        if name not in self.registry:
            return _permanent(
                "jobs.unknown_job", f"no job named {name!r}; known jobs: {', '.join(self.registry.names)}"
            )
        job = self.registry.get(name)
        try:
            payload = job.validate(json.loads(body))
        except RecursionError:
            return _permanent("jobs.invalid_payload", "request body nests JSON too deeply")
        except ValueError:
            return _permanent("jobs.invalid_payload", "request body is not JSON")
        except errors.InvalidPayloadError as exc:
            return _permanent("jobs.invalid_payload", str(exc))
        attempt = max(0, _int(headers.get("Upstash-Retried"), 0)) + 1
        max_attempts = _int(headers.get(MAX_ATTEMPTS_HEADER), job.max_attempts)
        if attempt > max_attempts:
            return _permanent("jobs.attempts_exhausted", f"attempt {attempt} is over max_attempts {max_attempts}")
        message_id = headers.get("Upstash-Message-Id", "")
        signal = AbortSignal()
        ctx = JobContext(
            job_id=message_id,
            job_name=name,
            attempt=attempt,
            max_attempts=max_attempts,
            signal=signal,
            provider="qstash",
            job_key=urllib.parse.unquote(headers.get(JOB_KEY_HEADER, "")) or None,
        )
        metrics.JOBS_STARTED.labels(name).inc()
        started = time.perf_counter()
        self.running.add(signal)
        try:
            await job.run(payload, ctx)
        except errors.PermanentJobError as exc:
            metrics.JOBS_FAILED.labels(name, "true").inc()
            return _permanent("jobs.permanent_failure", errors.describe(exc))
        except errors.RetryJob as exc:
            metrics.JOBS_FAILED.labels(name, "false").inc()
            delay = str(max(1, math.ceil(exc.delay.total_seconds())))
            return _error(503, "jobs.retry", errors.describe(exc), **{"Retry-After": delay})
        except Exception as exc:
            metrics.JOBS_FAILED.labels(name, str(ctx.is_last_attempt).lower()).inc()
            ctx.logger.warning("job %s (%s) attempt %d failed: %s", message_id, name, attempt, errors.describe(exc))
            return _error(500, "jobs.failed", errors.describe(exc))
        finally:
            self.running.discard(signal)
            metrics.JOB_DURATION.labels(name).observe(time.perf_counter() - started)
        metrics.JOBS_COMPLETED.labels(name).inc()
        return Reply(200, {"ok": True, "job": name, "attempt": attempt})


def _int(raw: str | None, default: int) -> int:
    try:
        return int(raw) if raw is not None else default
    except ValueError:
        return default


# -- aiohttp ---------------------------------------------------------------------------------------
def _json_response(reply: Reply) -> web.Response:
    return web.json_response(reply.body, status=reply.status, headers=reply.headers)


async def _request_chunks(request: web.Request) -> Chunks:
    try:
        async for chunk in request.content.iter_chunked(64 * 1024):
            yield chunk
    except (aiohttp.ClientPayloadError, ConnectionError) as exc:
        raise BodyIncomplete(str(exc)) from None


def create_app(
    registry: JobRegistry,
    config: QStashConfig | None = None,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    clock_tolerance: float = DEFAULT_CLOCK_TOLERANCE,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    seen_tokens: SeenTokens | None = None,
) -> web.Application:
    """The endpoint as an aiohttp app; ``config`` defaults to the receiving ``QSTASH_*`` env vars.

    ``seen_tokens`` defaults to the table at JOBWORKER_REPLAY_DATABASE_URL when that is set (closed with the
    app), else to this process's memory; see docs/qstash-endpoint.md#replay.
    """
    receiver = Receiver(
        registry,
        config or QStashConfig.from_env(publish=False),
        max_body_bytes=max_body_bytes,
        clock_tolerance=clock_tolerance,
        max_concurrency=max_concurrency,
        body_timeout=body_timeout,
        seen_tokens=seen_tokens,
    )

    async def run_job(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        reply = await receiver.handle(name, request.headers, request.content_length, _request_chunks(request))
        return _json_response(reply)

    async def on_shutdown(app: web.Application) -> None:
        receiver.shutdown()

    async def on_cleanup(app: web.Application) -> None:
        await receiver.close()

    # aiohttp's own limit applies only to request.read(); ours streams, so lift theirs past it.
    app = web.Application(client_max_size=max_body_bytes + 1)
    app.router.add_post(ROUTE_PREFIX + "{name}", run_job)
    httpserver.add_health_routes(app, lambda: True)  # the same /healthz and /metrics as every process
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    app[RECEIVER] = receiver
    return app


class EndpointRuntime:
    """What ``build_runtime`` returns for qstash: ``await run()`` serves the app until ``stop()``."""

    def __init__(self, app: web.Application, *, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.app, self.host, self.port = app, host, port
        self.runner: web.AppRunner | None = None
        self._stop = asyncio.Event()
        self.started = asyncio.Event()

    async def run(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        await site.start()
        if self.port == 0:  # report the port the OS picked
            self.port = int(self.runner.addresses[0][1])
        self.started.set()
        try:
            await self._stop.wait()
        finally:
            await self.runner.cleanup()

    def stop(self) -> None:
        self._stop.set()


# -- ASGI ------------------------------------------------------------------------------------------
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


def asgi_app(
    registry: JobRegistry,
    config: QStashConfig | None = None,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    clock_tolerance: float = DEFAULT_CLOCK_TOLERANCE,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    seen_tokens: SeenTokens | None = None,
) -> ASGIApp:
    """The same routes as an ASGI app, e.g. ``app.mount("/jobs", asgi_app(registry))`` in Starlette/FastAPI.

    ``seen_tokens`` defaults as in ``create_app``; a table is closed at the ASGI lifespan's shutdown.
    """
    receiver = Receiver(
        registry,
        config or QStashConfig.from_env(publish=False),
        max_body_bytes=max_body_bytes,
        clock_tolerance=clock_tolerance,
        max_concurrency=max_concurrency,
        body_timeout=body_timeout,
        seen_tokens=seen_tokens,
    )

    async def send_reply(send: Callable[[Message], Awaitable[None]], reply: Reply) -> None:
        body = json.dumps(reply.body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in reply.headers.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def app(
        scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.shutdown":
                    receiver.shutdown()
                    await receiver.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
                await send({"type": "lifespan.startup.complete"})
        path, root = scope["path"], scope.get("root_path", "")
        # The job name is the one segment after the prefix, percent-decoded: read it from raw_path, where an
        # encoded "/" in a name is still "%2F" (path has it decoded into a separator).
        raw = scope.get("raw_path") or urllib.parse.quote(path).encode()
        raw_path = raw.decode("latin-1").split("?", 1)[0]
        if root and path.startswith(root):  # Starlette keeps the mount prefix in path; plain ASGI does not
            path = path[len(root) :]
        raw_root = urllib.parse.quote(root)
        if raw_root and raw_path.startswith(raw_root):
            raw_path = raw_path[len(raw_root) :]
        headers = CIMultiDict((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
        if scope["method"] == "GET" and path == "/healthz":
            return await send_reply(send, Reply(200, httpserver.health_body(True)))
        if scope["method"] == "GET" and path == "/metrics":
            body = prometheus_client.generate_latest(prometheus_client.REGISTRY)
            kind = prometheus_client.CONTENT_TYPE_LATEST.encode()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", kind)]})
            return await send({"type": "http.response.body", "body": body})
        segment = raw_path[len(ROUTE_PREFIX) :]
        if not (scope["method"] == "POST" and raw_path.startswith(ROUTE_PREFIX) and segment and "/" not in segment):
            return await send_reply(send, _error(404, "jobs.not_found", f"no route for {scope['method']} {path}"))

        async def chunks() -> Chunks:
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise BodyIncomplete("http.disconnect")
                yield message.get("body", b"")
                more = message.get("more_body", False)

        length = _int(headers.get("Content-Length"), -1)
        name = urllib.parse.unquote(segment)
        reply = await receiver.handle(name, headers, length if length >= 0 else None, chunks())
        await send_reply(send, reply)

    return app


def main(args: argparse.Namespace) -> int:
    """``jobworker serve --tasks MOD``: serve until SIGTERM/SIGINT. Every other option is a field of
    ``settings.EndpointSettings`` (flag ``--<field>``, env ``JOBWORKER_<FIELD>``)."""
    registry = load_registry(args.tasks)
    flags = {f: getattr(args, f, None) for f in _FLAGS}
    for name in ("body_timeout", "replay_timeout"):  # durations: "30s", "500ms" or bare seconds
        raw = flags[name]
        if raw is not None:
            flags[name] = parse_duration(raw, field=f"--{name.replace('_', '-')}").total_seconds()
    settings = EndpointSettings.from_env(**flags)
    app = create_app(
        registry,
        QStashConfig.from_env(publish=False),
        max_body_bytes=settings.max_body_bytes,
        max_concurrency=settings.max_concurrency,
        body_timeout=settings.body_timeout,
        seen_tokens=default_seen_tokens(settings),
    )
    asyncio.run(_serve(app, settings, len(registry)))
    return 0


_FLAGS = ("host", "port", "max_body_bytes", "max_concurrency", "body_timeout", "replay_database_url", "replay_timeout")


async def _serve(app: web.Application, settings: EndpointSettings, jobs: int) -> None:
    store = app[RECEIVER].seen_tokens
    try:
        await _serve_with(app, settings, jobs, store)
    finally:
        if isinstance(store, PostgresSeenTokens):
            await store.close()


async def _serve_with(app: web.Application, settings: EndpointSettings, jobs: int, store: SeenTokens) -> None:
    if isinstance(store, PostgresSeenTokens):
        await store.check()  # a missing table is a setup error: say so now, not as a 503 per delivery
    runtime = EndpointRuntime(app, host=settings.host, port=settings.port)
    loop = asyncio.get_running_loop()
    for sig in (os_signal.SIGTERM, os_signal.SIGINT):
        loop.add_signal_handler(sig, runtime.stop)
    task = asyncio.create_task(runtime.run())
    started = asyncio.create_task(runtime.started.wait())
    await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
    if runtime.started.is_set():
        replay_store = "a shared table" if isinstance(store, PostgresSeenTokens) else "this process's memory"
        log.info(
            "serving %d jobs on http://%s:%d%s<name>; signatures recorded in %s",
            jobs,
            settings.host,
            runtime.port,
            ROUTE_PREFIX,
            replay_store,
        )
    started.cancel()
    await task
