"""A local stand-in for QStash, written from the documented protocol (/work/shared/qstash-protocol.md).

It serves the publish, enqueue and schedule API the official ``qstash`` SDK calls (point ``base_url``
or QSTASH_URL at ``standin.url``) and delivers like QStash: signed HS256 JWTs with rotating keys,
Not-Before, deduplication ids, retries with backoff on non-2xx (fast in tests, Retry-After honoured
after scaling), and no more retries after ``489`` + ``Upstash-NonRetryable-Error: true``. Every
delivery attempt is recorded. Knobs (``sign_with``, ``clock_offset``, ``tamper_body``, ``sub``) make
it misbehave the ways the endpoint must refuse.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
from aiohttp import web

from jobworker.durations import parse_duration


def signature(key: str, url: str, body: bytes, /, *, now: float | None = None, ttl: float = 300, **claims: Any) -> str:
    """An ``Upstash-Signature`` JWT as QStash makes it (the body hash keeps its base64 padding)."""
    now = time.time() if now is None else now
    payload = {
        "iss": "Upstash",
        "sub": url,
        "exp": int(now + ttl),
        "nbf": int(now),
        "iat": int(now),
        "jti": "jwt_" + secrets.token_hex(8),
        "body": base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode(),
        **claims,
    }
    return jwt.encode(payload, key, algorithm="HS256")


@dataclass
class Attempt:
    status: int
    headers: dict[str, str]
    body: str
    at: float
    request_headers: dict[str, str]


@dataclass
class Message:
    id: str
    destination: str
    body: bytes
    headers: dict[str, str]
    retries: int
    not_before: float
    method: str = "POST"
    queue: str | None = None
    schedule_id: str | None = None
    created_at: float = field(default_factory=time.time)
    attempts: list[Attempt] = field(default_factory=list)
    state: str = "pending"
    """pending, delivered, failed (retries used up) or dlq (non-retryable)."""

    @property
    def done(self) -> bool:
        return self.state != "pending"


class QStashStandIn:
    def __init__(self, *, token: str = "standin-token", backoff: Callable[[int], float] | None = None) -> None:
        self.token = token
        self.current_key = "sig_" + secrets.token_hex(16)
        self.next_key = "sig_" + secrets.token_hex(16)
        self.backoff = backoff or (lambda retried: 0.02 * retried)
        self.retry_after_scale = 0.05
        """Retry-After seconds are multiplied by this, so a test waits 100 ms for ``Retry-After: 2``."""
        self.messages: dict[str, Message] = {}
        self.dedup: dict[str, str] = {}
        self.schedules: dict[str, dict[str, Any]] = {}
        self.sign_with: str | None = None
        self.clock_offset = 0.0
        self.tamper_body = False
        self.sub: str | None = None
        self.drop_publish_responses = 0
        """Accept this many publishes, then cut the connection before answering: the SDK's retry case."""
        self._queues: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> QStashStandIn:
        app = web.Application()
        app.router.add_post("/v2/publish/{destination:.+}", self._publish)
        app.router.add_post("/v2/enqueue/{queue}/{destination:.+}", self._publish)
        app.router.add_post("/v2/schedules/{destination:.+}", self._create_schedule)
        app.router.add_get("/v2/schedules", self._list_schedules)
        app.router.add_get("/v2/schedules/{id}", self._get_schedule)
        app.router.add_delete("/v2/schedules/{id}", self._delete_schedule)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._session = aiohttp.ClientSession()
        return self

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def rotate(self) -> None:
        """Key rotation as Upstash does it: the next key becomes current, and a fresh next key appears."""
        self.current_key, self.next_key = self.next_key, "sig_" + secrets.token_hex(16)

    # -- API --------------------------------------------------------------------------------------
    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    @staticmethod
    def _destination(request: web.Request, marker: str) -> str:
        # The destination URL sits raw in the path; read the raw path so nothing is normalised away.
        return request.raw_path.split("?", 1)[0].split(marker, 1)[1]

    async def _publish(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        queue = request.match_info.get("queue")
        marker = f"/v2/enqueue/{queue}/" if queue else "/v2/publish/"
        destination = self._destination(request, marker)
        if not destination.startswith(("http://", "https://")) or "?" in destination:
            return web.json_response({"error": "invalid destination url"}, status=400)
        body = await request.read()
        h = request.headers
        dedup_id = h.get("Upstash-Deduplication-Id")
        if h.get("Upstash-Content-Based-Deduplication") == "true":
            dedup_id = hashlib.sha256(destination.encode() + body).hexdigest()
        if dedup_id and dedup_id in self.dedup:
            return web.json_response({"messageId": self.dedup[dedup_id], "deduplicated": True}, status=202)
        not_before = time.time()
        if "Upstash-Not-Before" in h:
            not_before = float(h["Upstash-Not-Before"])
        elif "Upstash-Delay" in h:
            not_before += parse_duration(h["Upstash-Delay"]).total_seconds()
        message = self.add_message(
            destination,
            body,
            headers=self._forwarded(h),
            retries=int(h.get("Upstash-Retries", "3")),
            not_before=not_before,
            method=h.get("Upstash-Method", "POST"),
            queue=queue,
        )
        if dedup_id:
            self.dedup[dedup_id] = message.id
        if self.drop_publish_responses > 0:
            self.drop_publish_responses -= 1
            assert request.transport is not None
            request.transport.abort()  # accepted, but the client never hears so: it sees a network error
        return web.json_response({"messageId": message.id})

    @staticmethod
    def _forwarded(h: Any) -> dict[str, str]:
        out = {k[len("Upstash-Forward-") :]: v for k, v in h.items() if k.lower().startswith("upstash-forward-")}
        out["Content-Type"] = h.get("Content-Type", "application/octet-stream")
        return out

    async def _create_schedule(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        h = request.headers
        schedule_id = h.get("Upstash-Schedule-Id") or "scd_" + secrets.token_hex(8)
        existing = self.schedules.get(schedule_id)
        self.schedules[schedule_id] = {
            "scheduleId": schedule_id,
            "destination": self._destination(request, "/v2/schedules/"),
            "cron": h["Upstash-Cron"],
            "createdAt": existing["createdAt"] if existing else int(time.time() * 1000),
            "body": (await request.read()).decode(),
            "method": h.get("Upstash-Method", "POST"),
            "header": self._forwarded(h),
            "retries": int(h.get("Upstash-Retries", "3")),
        }
        return web.json_response({"scheduleId": schedule_id})

    async def _list_schedules(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.schedules.values()))

    async def _get_schedule(self, request: web.Request) -> web.Response:
        found = self.schedules.get(request.match_info["id"])
        return web.json_response(found) if found else web.json_response({"error": "not found"}, status=404)

    async def _delete_schedule(self, request: web.Request) -> web.Response:
        self.schedules.pop(request.match_info["id"], None)
        return web.Response(status=200)

    # -- delivery ---------------------------------------------------------------------------------
    def add_message(self, destination: str, body: bytes, **options: Any) -> Message:
        message = Message("msg_" + secrets.token_hex(10), destination, body, **options)
        self.messages[message.id] = message
        task = asyncio.create_task(self._deliver_all(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return message

    def trigger_schedule(self, schedule_id: str) -> Message:
        """What QStash does when the cron fires: a fresh message with Upstash-Schedule-Id."""
        s = self.schedules[schedule_id]
        return self.add_message(
            s["destination"],
            s["body"].encode(),
            headers=dict(s["header"]),
            retries=s["retries"],
            not_before=time.time(),
            method=s["method"],
            schedule_id=schedule_id,
        )

    async def _deliver_all(self, message: Message) -> None:
        lock = self._queues.setdefault(message.queue, asyncio.Lock()) if message.queue else None
        async with lock or contextlib.nullcontext():
            await asyncio.sleep(max(0.0, message.not_before - time.time()))
            retried = 0
            while True:
                attempt = await self._deliver_once(message, retried)
                message.attempts.append(attempt)
                if 200 <= attempt.status < 300:
                    message.state = "delivered"
                    return
                if attempt.status == 489 and attempt.headers.get("Upstash-NonRetryable-Error") == "true":
                    message.state = "dlq"
                    return
                if retried >= message.retries:
                    message.state = "failed"
                    return
                retried += 1
                delay = self.backoff(retried)
                if "Retry-After" in attempt.headers:
                    delay = float(attempt.headers["Retry-After"]) * self.retry_after_scale
                await asyncio.sleep(delay)

    async def _deliver_once(self, message: Message, retried: int) -> Attempt:
        assert self._session is not None
        signed_body = message.body
        sent_body = message.body + b" " if self.tamper_body else message.body
        token = signature(
            self.sign_with or self.current_key,
            self.sub or message.destination,
            signed_body,
            now=time.time() + self.clock_offset,
        )
        headers = {
            **message.headers,
            "Upstash-Signature": token,
            "Upstash-Message-Id": message.id,
            "Upstash-Retried": str(retried),
            "User-Agent": "Upstash-QStash",
        }
        if message.schedule_id:
            headers["Upstash-Schedule-Id"] = message.schedule_id
        try:
            async with self._session.request(
                message.method, message.destination, data=sent_body, headers=headers
            ) as response:
                text = await response.text()
                return Attempt(response.status, dict(response.headers), text, time.time(), headers)
        except aiohttp.ClientError as exc:
            return Attempt(0, {}, str(exc), time.time(), headers)

    async def settled(self, message_id: str, within: float = 10.0) -> Message:
        """Wait (with a deadline) until the message is delivered or given up."""
        deadline = time.monotonic() + within
        message = self.messages[message_id]
        while not message.done:
            if time.monotonic() > deadline:
                raise AssertionError(f"message {message_id} still {message.state} after {within}s: {message.attempts}")
            await asyncio.sleep(0.01)
        return message


@contextlib.asynccontextmanager
async def running_standin(**options: Any) -> AsyncIterator[QStashStandIn]:
    standin = await QStashStandIn(**options).start()
    try:
        yield standin
    finally:
        await standin.close()


@contextlib.asynccontextmanager
async def serving(make_app: Callable[[str], web.Application]) -> AsyncIterator[str]:
    """Serve ``make_app(base_url)`` on a loopback port chosen up front, so the app knows its own URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    runner = web.AppRunner(make_app(base), access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield base
    finally:
        await runner.cleanup()
