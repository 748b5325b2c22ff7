"""define_job, JobDefinition and AbortSignal: validation, payload handling, sync/async handlers."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

import pydantic
import pytest
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from jobworker import errors
from jobworker.jobs import AbortSignal, JobContext, JobDefinition, JobKeyMode, define_job, validate_job_key_mode


class Email(pydantic.BaseModel):
    to: str
    attempts: int = 1


class Report(TypedDict):
    month: str


async def noop(payload: Any, ctx: JobContext) -> None:
    pass


def test_decorator_and_handler_forms_make_the_same_definition() -> None:
    @define_job("send_email", payload=Email, max_attempts=5, queue="mail", priority=-1)
    async def send_email(payload: Email, ctx: JobContext) -> None:
        pass

    direct = define_job("send_email", payload=Email, handler=send_email.handler, max_attempts=5, queue="mail")
    assert isinstance(send_email, JobDefinition)
    assert (send_email.name, send_email.payload_type, send_email.max_attempts) == ("send_email", Email, 5)
    assert (send_email.queue, send_email.priority, send_email.is_async) == ("mail", -1, True)
    assert direct.handler is send_email.handler


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": ""}, "name: must be a non-empty string"),
        ({"name": "x" * 129}, "name: 129 characters is over the limit of 128"),
        ({"queue": "q" * 129}, "queue: 129 characters"),
        ({"max_attempts": 0}, "max_attempts: 0 must be an integer from 1 to 32767"),
        ({"max_attempts": 32768}, "max_attempts: 32768"),
        ({"priority": -32769}, "priority: -32769 must be an integer"),
        ({"priority": 1.5}, "priority: 1.5"),
    ],
)
def test_define_job_refuses_bad_options_naming_the_field(options: dict[str, Any], message: str) -> None:
    kwargs: dict[str, Any] = {"name": "job", "payload": dict, "handler": noop, **options}
    name = kwargs.pop("name")
    with pytest.raises(errors.ConfigurationError) as caught:
        define_job(name, **kwargs)
    assert str(caught.value).startswith(message)


def test_define_job_refuses_a_payload_type_pydantic_cannot_validate() -> None:
    class Opaque:
        pass

    with pytest.raises(errors.ConfigurationError, match=r"job 'opaque': payload type .* is not a pydantic model"):
        define_job("opaque", payload=Opaque, handler=noop)


def test_validate_turns_json_into_the_payload_type() -> None:
    job = define_job("send_email", payload=Email, handler=noop)
    assert job.validate({"to": "a@example.com"}) == Email(to="a@example.com", attempts=1)
    report = define_job("report", payload=Report, handler=noop)
    assert report.validate({"month": "2024-01"}) == {"month": "2024-01"}


def test_validate_decoded_passes_a_decoded_json_object_as_is_for_plain_dict_payloads() -> None:
    # The worker's per-job path: json.loads output for a dict[str, Any] (or Any) payload is not copied again.
    raw = {"to": "a@example.com", "n": [1, 2]}
    for payload_type in (dict[str, Any], dict, Any):
        assert define_job("plain", payload=payload_type, handler=noop).validate_decoded(raw) is raw
    # Anything else still goes through pydantic: other shapes are refused, models still validated.
    with pytest.raises(errors.InvalidPayloadError):
        define_job("plain", payload=dict[str, Any], handler=noop).validate_decoded([1, 2])
    job = define_job("send_email", payload=Email, handler=noop)
    assert job.validate_decoded({"to": "a@example.com"}) == Email(to="a@example.com", attempts=1)


def test_validate_names_every_bad_field() -> None:
    job = define_job("send_email", payload=Email, handler=noop)
    with pytest.raises(errors.InvalidPayloadError) as caught:
        job.validate({"attempts": "many"})
    message = str(caught.value)
    assert message.startswith("Invalid job payload: ")
    assert "to: Field required" in message and "attempts: " in message
    with pytest.raises(errors.InvalidPayloadError, match=r"Invalid job payload: \(payload\): "):
        job.validate([1, 2])


def test_dump_gives_the_json_form() -> None:
    job = define_job("send_email", payload=Email, handler=noop)
    assert job.dump(Email(to="x@example.com", attempts=3)) == {"to": "x@example.com", "attempts": 3}
    dates = define_job("dates", payload=dict[str, Any], handler=noop)
    with pytest.raises(errors.InvalidPayloadError, match="Invalid job payload for 'dates'"):
        dates.dump({"x": object()})


def make_ctx(signal: AbortSignal | None = None) -> JobContext:

    return JobContext(
        job_id="1",
        job_name="j",
        attempt=1,
        max_attempts=1,
        signal=signal or AbortSignal(),
    )


async def test_sync_handlers_run_in_a_worker_thread_and_async_ones_on_the_loop() -> None:
    seen: dict[str, int] = {}

    def sync_handler(payload: dict[str, Any], ctx: JobContext) -> str:
        seen["sync"] = threading.get_ident()
        return "sync result"

    async def async_handler(payload: dict[str, Any], ctx: JobContext) -> str:
        seen["async"] = threading.get_ident()
        return "async result"

    sync_job = define_job("s", payload=dict, handler=sync_handler)
    async_job = define_job("a", payload=dict, handler=async_handler)
    assert not sync_job.is_async and async_job.is_async
    assert await sync_job.run({}, make_ctx()) == "sync result"
    assert await async_job.run({}, make_ctx()) == "async result"
    assert seen["async"] == threading.get_ident() != seen["sync"]


async def test_a_handler_returning_an_awaitable_is_awaited_on_the_loop() -> None:
    """Handler allows any callable returning an Awaitable: a callable object with an async __call__,
    or a plain function (a lambda) returning a coroutine. Its work must run, not be dropped unawaited."""
    ran: list[str] = []

    async def send(payload: dict[str, Any], ctx: JobContext) -> str:
        ran.append(payload["via"])
        return payload["via"]

    class Handler:
        async def __call__(self, payload: dict[str, Any], ctx: JobContext) -> str:
            return await send(payload, ctx)

    by_object = define_job("o", payload=dict, handler=Handler())
    by_lambda = define_job("l", payload=dict, handler=lambda payload, ctx: send(payload, ctx))
    assert await by_object.run({"via": "object"}, make_ctx()) == "object"
    assert await by_lambda.run({"via": "lambda"}, make_ctx()) == "lambda"
    assert ran == ["object", "lambda"]


def test_context_knows_its_last_attempt() -> None:
    ctx = make_ctx()
    assert ctx.is_last_attempt
    assert not dataclasses.replace(ctx, max_attempts=2).is_last_attempt


async def test_abort_signal_wakes_async_and_thread_waiters_once() -> None:
    signal = AbortSignal()
    assert not signal.is_set() and signal.reason is None
    waiter = asyncio.create_task(signal.wait())
    in_thread = asyncio.create_task(asyncio.to_thread(signal.wait_sync, 5))
    await asyncio.sleep(0)
    assert not waiter.done()

    signal.fire("stop now")
    signal.fire("ignored second reason")

    await asyncio.wait_for(waiter, 5)
    assert await asyncio.wait_for(in_thread, 5) is True
    assert signal.is_set() and signal.reason == "stop now"
    await asyncio.wait_for(signal.wait(), 1)  # already set: returns at once
    assert AbortSignal().wait_sync(0.01) is False


def test_job_key_mode_values_and_errors() -> None:
    assert [m.value for m in JobKeyMode] == ["replace", "preserve_run_at", "unsafe_dedupe"]
    assert validate_job_key_mode("preserve_run_at") is JobKeyMode.PRESERVE_RUN_AT
    with pytest.raises(errors.ConfigurationError, match="job_key_mode: 'dedupe' is not one of replace"):
        validate_job_key_mode("dedupe")
