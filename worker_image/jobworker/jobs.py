"""Typed job definitions: ``define_job`` binds a name, a payload type, a handler and a retry policy."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar, overload

import pydantic
import pydantic_core

from jobworker import errors

P = TypeVar("P")

MAX_IDENTIFIER_LENGTH = 128
"""graphile's CHECK constraint on task identifiers and queue names."""
MAX_JOB_KEY_LENGTH = 512
DEFAULT_MAX_ATTEMPTS = 25


class JobKeyMode(enum.StrEnum):
    """What adding a job whose ``job_key`` already exists does."""

    REPLACE = "replace"
    """Overwrite the unlocked job, run_at included (debounce)."""
    PRESERVE_RUN_AT = "preserve_run_at"
    """Overwrite everything but run_at (throttle)."""
    UNSAFE_DEDUPE = "unsafe_dedupe"
    """Insert only if no job has that key, even a running or failed one."""


_SIGNAL_LOCK = threading.Lock()
"""One lock for every AbortSignal: firing and waiting are rare, and a lock per signal cost every job."""


class AbortSignal:
    """Fires when the job should stop: the worker shuts down, the job timed out, or its heartbeat was lost.

    Works from async handlers (``await signal.wait()``) and from sync handlers running in a thread
    (``signal.is_set()``, ``signal.wait_sync(timeout)``). Each job has its own signal.
    """

    __slots__ = ("_fired", "_thread_event", "_waiters", "reason")

    def __init__(self) -> None:
        self._fired = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._thread_event: threading.Event | None = None
        self.reason: str | None = None

    def is_set(self) -> bool:
        return self._fired

    def fire(self, reason: str = "worker is shutting down") -> None:
        with _SIGNAL_LOCK:
            if self._fired:
                return
            self.reason = reason
            self._fired = True
            waiters, self._waiters = self._waiters, []
            thread_event = self._thread_event
        if thread_event is not None:
            thread_event.set()
        for loop, event in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    async def wait(self) -> None:
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with _SIGNAL_LOCK:
            if self._fired:
                return
            self._waiters.append(entry)
        try:
            await entry[1].wait()
        finally:
            # A waiter that gave up (a handler racing wait() against its work, then cancelling it) must not
            # stay listed: the list would grow by one entry per call for the signal's whole life.
            with _SIGNAL_LOCK, contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    def wait_sync(self, timeout: float | None = None) -> bool:
        with _SIGNAL_LOCK:
            if self._fired:
                return True
            if self._thread_event is None:
                self._thread_event = threading.Event()
            event = self._thread_event
        return event.wait(timeout)

    @property
    def waiters(self) -> int:
        """How many ``wait()`` calls are pending now."""
        return len(self._waiters)


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a handler knows about the job it runs. The same under every provider."""

    job_id: str
    job_name: str
    attempt: int
    """1 on the first run."""
    max_attempts: int
    signal: AbortSignal
    """Fires when the job should stop: the worker shuts down, the job's timeout expired, or the worker lost
    its heartbeat for half the sweep threshold (its jobs may soon be handed to another worker)."""
    provider: str = "graphile"
    job_key: str | None = None
    run_at: datetime | None = None
    queue_name: str | None = None
    priority: int = 0
    flags: frozenset[str] = frozenset()

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """``jobworker.job.<job_name>``, with the job id in each record; built on use, not per job."""
        return logging.LoggerAdapter(logging.getLogger(f"jobworker.job.{self.job_name}"), {"job_id": self.job_id})

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts


Handler = Callable[[P, JobContext], Awaitable[object]] | Callable[[P, JobContext], object]


@dataclass(frozen=True, eq=False)
class JobDefinition(Generic[P]):
    """A named job: its payload type, handler and defaults for every enqueue."""

    name: str
    payload_type: type[P]
    handler: Handler[P]
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    queue: str | None = None
    priority: int = 0
    schedule: str | Mapping[str, Any] | None = None
    timeout: float | None = None
    """Seconds an attempt may run before ctx.signal fires; after the worker's grace period the attempt fails.
    None: the worker's ``job_timeout`` (no limit by default)."""
    _adapter: pydantic.TypeAdapter[P] = field(init=False, repr=False, compare=False)
    _is_async: bool = field(init=False, repr=False, compare=False)
    _plain_dict: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        validate_identifier(self.name, field="name")
        if self.queue is not None:
            validate_identifier(self.queue, field="queue")
        validate_max_attempts(self.max_attempts)
        validate_priority(self.priority)
        if self.timeout is not None and (
            not isinstance(self.timeout, int | float) or isinstance(self.timeout, bool) or self.timeout <= 0
        ):
            raise errors.ConfigurationError(
                f"job {self.name!r}: timeout {self.timeout!r} must be a number of seconds > 0"
            )
        try:
            adapter = pydantic.TypeAdapter(self.payload_type)
        except pydantic.PydanticSchemaGenerationError as exc:
            raise errors.ConfigurationError(
                f"job {self.name!r}: payload type {self.payload_type!r} is not a pydantic model, "
                "TypedDict or other type pydantic can validate"
            ) from exc
        except pydantic.PydanticUserError as exc:
            # e.g. typing.TypedDict on Python < 3.12, where pydantic needs typing_extensions.TypedDict
            raise errors.ConfigurationError(f"job {self.name!r}: payload type {self.payload_type!r}: {exc}") from exc
        object.__setattr__(self, "_adapter", adapter)
        is_async = inspect.iscoroutinefunction(self.handler) or (
            not inspect.isroutine(self.handler) and inspect.iscoroutinefunction(getattr(self.handler, "__call__", None))  # noqa: B004
        )
        object.__setattr__(self, "_is_async", is_async)
        # See validate_decoded: pydantic's copy of a decoded JSON object was ~2 % of a batch-mode worker's CPU.
        object.__setattr__(self, "_plain_dict", self.payload_type in (dict, dict[str, Any], Any))

    @property
    def is_async(self) -> bool:
        return self._is_async

    def validate(self, raw: Any) -> P:
        """Turn the stored JSON into the payload type, or raise InvalidPayloadError naming the field."""
        try:
            return self._adapter.validate_python(raw)
        except pydantic.ValidationError as exc:
            raise errors.InvalidPayloadError(f"Invalid job payload: {describe_validation_error(exc)}") from None

    def validate_decoded(self, raw: Any) -> P:
        """``validate`` for what ``json.loads`` returned: a JSON object is then already a valid
        ``dict[str, Any]`` (its keys are strings), so it is passed as is instead of copied by pydantic."""
        if self._plain_dict and type(raw) is dict:
            return raw  # type: ignore[return-value]
        return self.validate(raw)

    def dump(self, payload: P) -> Any:
        """The JSON-ready form stored in the database or sent over HTTP."""
        try:
            return self._adapter.dump_python(payload, mode="json")
        except (pydantic.ValidationError, pydantic_core.PydanticSerializationError) as exc:
            raise errors.InvalidPayloadError(f"Invalid job payload for {self.name!r}: {exc}") from None

    async def run(self, payload: P, ctx: JobContext, *, on_thread_exit: Callable[[], None] | None = None) -> object:
        """Call the handler; sync handlers run in a thread so they never block the worker's loop.

        ``on_thread_exit`` is called (in that thread) when a sync handler returns: a worker that stopped
        waiting for it (timeout, shutdown) learns when its thread is free again.
        """
        if self._is_async:
            return await self.handler(payload, ctx)  # type: ignore[misc]

        def call() -> object:
            try:
                return self.handler(payload, ctx)  # type: ignore[call-arg]
            finally:
                if on_thread_exit is not None:
                    on_thread_exit()

        result = await asyncio.to_thread(call)
        if inspect.isawaitable(result):
            # A plain function returning a coroutine (``lambda p, ctx: send(p)``): its work is still to do.
            return await result
        return result


def describe_validation_error(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(payload)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


@overload
def define_job(
    name: str,
    *,
    payload: type[P],
    handler: Handler[P],
    max_attempts: int = ...,
    queue: str | None = ...,
    priority: int = ...,
    schedule: str | Mapping[str, Any] | None = ...,
    timeout: float | None = ...,
) -> JobDefinition[P]: ...
@overload
def define_job(
    name: str,
    *,
    payload: type[P],
    handler: None = ...,
    max_attempts: int = ...,
    queue: str | None = ...,
    priority: int = ...,
    schedule: str | Mapping[str, Any] | None = ...,
    timeout: float | None = ...,
) -> Callable[[Handler[P]], JobDefinition[P]]: ...
def define_job(
    name: str,
    *,
    payload: type[P],
    handler: Handler[P] | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    queue: str | None = None,
    priority: int = 0,
    schedule: str | Mapping[str, Any] | None = None,
    timeout: float | None = None,
) -> JobDefinition[P] | Callable[[Handler[P]], JobDefinition[P]]:
    """Define a job. Use as a decorator, or pass ``handler=``.

    >>> @define_job("send_email", payload=Email, max_attempts=5)
    ... async def send_email(payload: Email, ctx: JobContext) -> None: ...

    ``queue`` makes every job of this definition run one at a time in that named queue;
    ``schedule`` is a cron expression or a schedule entry the scheduler runs; ``timeout`` (seconds) fires
    ctx.signal when an attempt runs that long, and fails the attempt after the worker's grace period.
    """

    def bind(fn: Handler[P]) -> JobDefinition[P]:
        return JobDefinition(
            name=name,
            payload_type=payload,
            handler=fn,
            max_attempts=max_attempts,
            queue=queue,
            priority=priority,
            schedule=schedule,
            timeout=timeout,
        )

    return bind(handler) if handler is not None else bind


def validate_identifier(value: object, *, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise errors.ConfigurationError(f"{field}: must be a non-empty string")
    if len(value) > MAX_IDENTIFIER_LENGTH:
        raise errors.ConfigurationError(
            f"{field}: {len(value)} characters is over the limit of {MAX_IDENTIFIER_LENGTH}; use a shorter name"
        )
    return value


def validate_job_key(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise errors.ConfigurationError("job_key: must be a non-empty string (or leave it out)")
    if len(value) > MAX_JOB_KEY_LENGTH:
        raise errors.ConfigurationError(
            f"job_key: {len(value)} characters is over the limit of {MAX_JOB_KEY_LENGTH}; hash long keys"
        )
    return value


def validate_max_attempts(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 32767:
        raise errors.ConfigurationError(f"max_attempts: {value!r} must be an integer from 1 to 32767")
    return value


def validate_priority(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not -32768 <= value <= 32767:
        raise errors.ConfigurationError(
            f"priority: {value!r} must be an integer from -32768 to 32767 (lower runs first)"
        )
    return value


def validate_job_key_mode(value: object) -> JobKeyMode:
    try:
        return JobKeyMode(str(value))
    except ValueError:
        choices = ", ".join(m.value for m in JobKeyMode)
        raise errors.ConfigurationError(f"job_key_mode: {value!r} is not one of {choices}") from None
