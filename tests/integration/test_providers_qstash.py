"""The qstash provider end to end: the real ``qstash`` SDK publishes to the local stand-in, which
delivers signed requests to the job endpoint, which runs the shared job module."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from qstash import AsyncQStash

from jobworker import errors
from jobworker.config import QStashConfig
from jobworker.crontab import parse_entry
from jobworker.endpoint import create_app
from jobworker.jobs import JobKeyMode
from jobworker.providers import qstash as provider
from jobworker.providers.qstash import QStashJobQueue, sync_schedules
from tests import shared_jobs
from tests.qstash_standin import QStashStandIn, running_standin, serving


@dataclass
class Stack:
    standin: QStashStandIn
    config: QStashConfig
    queue: QStashJobQueue


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    shared_jobs.CALLS.clear()
    async with running_standin() as standin:
        configs: list[QStashConfig] = []

        def make(base: str) -> object:
            configs.append(
                QStashConfig(
                    token=standin.token,
                    url=standin.url,
                    current_signing_key=standin.current_key,
                    next_signing_key=standin.next_key,
                    callback_url=base,
                )
            )
            return create_app(shared_jobs.registry, configs[0])

        async with serving(make) as _:  # type: ignore[arg-type]
            queue = QStashJobQueue(configs[0])
            try:
                yield Stack(standin, configs[0], queue)
            finally:
                await queue.close()


def calls(job: str) -> list[shared_jobs.Call]:
    return [c for c in shared_jobs.CALLS if c.job == job]


async def test_delivery_runs_the_handler_with_the_qstash_context(stack: Stack) -> None:
    sent = await stack.queue.enqueue(shared_jobs.greet, shared_jobs.Greeting(name="Ada"), job_key="greet-ada")
    message = await stack.standin.settled(sent.id)
    assert message.state == "delivered"
    assert [a.status for a in message.attempts] == [200]
    assert message.destination == f"{stack.config.callback_url}/v1/jobs/run/greet"
    assert message.retries == 2  # max_attempts 3 -> 2 retries
    [call] = calls("greet")
    assert call.payload == {"name": "Ada", "times": 1}
    assert (call.provider, call.job_id, call.attempt, call.max_attempts, call.job_key) == (
        "qstash",
        sent.id,
        1,
        3,
        "greet-ada",
    )


async def test_sync_handlers_run_too(stack: Stack) -> None:
    sent = await stack.queue.enqueue(shared_jobs.greet_sync, shared_jobs.Greeting(name="Bo", times=2))
    assert (await stack.standin.settled(sent.id)).state == "delivered"
    assert calls("greet_sync")[0].payload == {"name": "Bo", "times": 2}


async def test_failures_are_retried_with_the_attempt_counting_up(stack: Stack) -> None:
    sent = await stack.queue.enqueue(shared_jobs.flaky, shared_jobs.Flaky(succeed_on=3))
    message = await stack.standin.settled(sent.id)
    assert [a.status for a in message.attempts] == [500, 500, 200]
    assert [c.attempt for c in calls("flaky")] == [1, 2, 3]
    assert message.state == "delivered"


async def test_retries_stop_at_max_attempts(stack: Stack) -> None:
    sent = await stack.queue.enqueue(shared_jobs.flaky, shared_jobs.Flaky(succeed_on=9), max_attempts=2)
    message = await stack.standin.settled(sent.id)
    assert [a.status for a in message.attempts] == [500, 500]
    assert message.state == "failed"
    assert [(c.attempt, c.max_attempts) for c in calls("flaky")] == [(1, 2), (2, 2)]


async def test_permanent_error_answers_489_and_ends_retries(stack: Stack) -> None:
    sent = await stack.queue.enqueue(shared_jobs.doomed, shared_jobs.Greeting(name="x"))
    message = await stack.standin.settled(sent.id)
    assert message.state == "dlq"
    [attempt] = message.attempts
    assert attempt.status == 489
    assert attempt.headers["Upstash-NonRetryable-Error"] == "true"
    assert len(calls("doomed")) == 1


async def test_retry_job_answers_503_with_retry_after(stack: Stack) -> None:
    sent = await stack.queue.enqueue(shared_jobs.later, shared_jobs.Greeting(name="x"))
    message = await stack.standin.settled(sent.id)
    assert [a.status for a in message.attempts] == [503, 200]
    assert message.attempts[0].headers["Retry-After"] == "2"
    gap = message.attempts[1].at - message.attempts[0].at
    assert gap >= 2 * stack.standin.retry_after_scale * 0.9  # the stand-in waited as Retry-After asked


async def test_unknown_job_is_not_retried(stack: Stack) -> None:
    client = AsyncQStash(stack.config.token, base_url=stack.standin.url)
    sent = await client.message.publish_json(url=stack.config.destination("no_such_job"), body={}, retries=5)
    message = await stack.standin.settled(sent.message_id)  # type: ignore[union-attr]
    assert [a.status for a in message.attempts] == [489]
    assert '"jobs.unknown_job"' in message.attempts[0].body


async def test_identical_enqueues_without_a_key_are_two_jobs(stack: Stack) -> None:
    payload = shared_jobs.Greeting(name="twice")
    first = await stack.queue.enqueue(shared_jobs.greet, payload)
    again = await stack.queue.enqueue(shared_jobs.greet, payload)
    assert first.id != again.id and not first.deduplicated and not again.deduplicated
    for sent in (first, again):
        assert (await stack.standin.settled(sent.id)).state == "delivered"
    assert [c.payload["name"] for c in calls("greet")] == ["twice", "twice"]


async def test_the_sdks_retry_of_one_enqueue_reuses_its_deduplication_id(stack: Stack) -> None:
    stack.standin.drop_publish_responses = 1  # published, but the answer is lost: the SDK publishes again
    sent = await stack.queue.enqueue(shared_jobs.greet, shared_jobs.Greeting(name="retried"))
    assert sent.deduplicated  # the second publish was recognised as the first
    assert len(stack.standin.messages) == 1
    assert (await stack.standin.settled(sent.id)).state == "delivered"
    assert [c.payload["name"] for c in calls("greet")] == ["retried"]


@pytest.mark.parametrize("key", ["user:1", "user@example.com", "a/b", "with space", "naïve", "x" * 512])
async def test_a_key_dedupes_on_the_key_alone(stack: Stack, key: str, caplog: pytest.LogCaptureFixture) -> None:
    run_at = datetime.now(UTC) + timedelta(seconds=1)
    keyed = await stack.queue.enqueue(shared_jobs.greet, shared_jobs.Greeting(name="a"), job_key=key)
    rekeyed = await stack.queue.enqueue(shared_jobs.greet, shared_jobs.Greeting(name="b"), job_key=key, run_at=run_at)
    assert rekeyed.id == keyed.id and rekeyed.deduplicated
    # The second payload was dropped, and the log says so: QStash cannot replace a waiting message.
    assert any("cannot replace a waiting message" in r.getMessage() for r in caplog.records)
    await stack.standin.settled(keyed.id)
    assert [c.payload["name"] for c in calls("greet")] == ["a"]
    assert [c.job_key for c in calls("greet")] == [key]


@pytest.mark.parametrize("mode", ["replace", "preserve_run_at", JobKeyMode.REPLACE])
async def test_a_replacing_key_mode_is_refused(stack: Stack, mode: str) -> None:
    with pytest.raises(errors.ConfigurationError, match=r"job_key_mode .* QStash cannot do .*unsafe_dedupe"):
        await stack.queue.enqueue(shared_jobs.greet, shared_jobs.Greeting(name="r"), job_key="k", job_key_mode=mode)
    assert stack.standin.messages == {}


async def test_unsafe_dedupe_is_first_wins_without_a_warning(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("first", "second"):
        sent = await stack.queue.enqueue(
            shared_jobs.greet, shared_jobs.Greeting(name=name), job_key="once", job_key_mode="unsafe_dedupe"
        )
    assert sent.deduplicated and len(stack.standin.messages) == 1
    assert not any("cannot replace" in r.getMessage() for r in caplog.records)


async def test_run_at_becomes_not_before(stack: Stack) -> None:
    run_at = datetime.now(UTC) + timedelta(seconds=1.5)
    sent = await stack.queue.enqueue(shared_jobs.greet, shared_jobs.Greeting(name="late"), run_at=run_at)
    assert stack.standin.messages[sent.id].not_before == int(run_at.timestamp())
    message = await stack.standin.settled(sent.id, within=10)
    assert message.attempts[0].at >= int(run_at.timestamp())


async def test_named_queue_uses_a_qstash_queue(stack: Stack) -> None:
    sent = await stack.queue.enqueue(shared_jobs.greet, shared_jobs.Greeting(name="q"), queue="serial")
    assert stack.standin.messages[sent.id].queue == "serial"
    assert (await stack.standin.settled(sent.id)).state == "delivered"


# -- signatures ------------------------------------------------------------------------------------
async def _rejected(stack: Stack, name: str) -> None:
    sent = await stack.queue.enqueue(shared_jobs.greet, shared_jobs.Greeting(name=name), max_attempts=2)
    message = await stack.standin.settled(sent.id)
    assert [a.status for a in message.attempts] == [401, 401]
    assert all('"jobs.invalid_signature"' in a.body for a in message.attempts)
    assert [c for c in calls("greet") if c.payload["name"] == name] == []  # the handler never ran


async def test_wrong_key_is_rejected(stack: Stack) -> None:
    stack.standin.sign_with = "sig_" + "0" * 32
    await _rejected(stack, "wrong-key")


async def test_next_key_is_accepted_after_rotation(stack: Stack) -> None:
    stack.standin.rotate()  # now signs with what the endpoint knows as QSTASH_NEXT_SIGNING_KEY
    sent = await stack.queue.enqueue(shared_jobs.greet, shared_jobs.Greeting(name="rotated"))
    assert (await stack.standin.settled(sent.id)).state == "delivered"
    stack.standin.rotate()  # twice: neither configured key signs any more
    await _rejected(stack, "rotated-twice")


async def test_tampered_body_is_rejected(stack: Stack) -> None:
    stack.standin.tamper_body = True
    await _rejected(stack, "tampered")


async def test_token_for_another_url_is_rejected(stack: Stack) -> None:
    stack.standin.sub = "https://elsewhere.example.com/v1/jobs/run/greet"
    await _rejected(stack, "other-url")


async def test_expired_token_is_rejected(stack: Stack) -> None:
    stack.standin.clock_offset = -600  # signed 10 minutes ago: exp passed 5 minutes ago
    await _rejected(stack, "expired")


@pytest.mark.parametrize("offset", [-303, 3])
async def test_small_clock_skew_is_tolerated(stack: Stack, offset: float) -> None:
    stack.standin.clock_offset = offset  # exp 3 s ago, or nbf 3 s ahead: within the 5 s tolerance
    sent = await stack.queue.enqueue(shared_jobs.greet, shared_jobs.Greeting(name=f"skew{offset}"))
    assert (await stack.standin.settled(sent.id)).state == "delivered"


# -- schedules -------------------------------------------------------------------------------------
async def test_sync_schedules_upserts_with_stable_ids_and_prunes(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = [
        parse_entry(
            {
                "id": "nightly",
                "task": "greet",
                "cron": "0 4 * * *",
                "timezone": "Europe/Berlin",
                "payload": {"name": "night"},
            },
            where="e1",
        ),
        parse_entry({"id": "minutely", "task": "every_minute", "cron": "* * * * *"}, where="e2"),
    ]
    client = AsyncQStash(stack.config.token, base_url=stack.standin.url)
    for _ in range(2):  # a redeploy syncs again and must not duplicate
        await sync_schedules(entries, stack.config, registry=shared_jobs.registry, client=client)
    assert sorted(stack.standin.schedules) == ["jobworker-minutely", "jobworker-nightly"]
    nightly = stack.standin.schedules["jobworker-nightly"]
    assert nightly["cron"] == "CRON_TZ=Europe/Berlin 0 4 * * *"
    assert nightly["destination"] == stack.config.destination("greet")
    assert nightly["retries"] == 2
    assert stack.standin.schedules["jobworker-minutely"]["cron"] == "* * * * *"

    message = stack.standin.trigger_schedule("jobworker-nightly")
    assert (await stack.standin.settled(message.id)).state == "delivered"
    assert calls("greet")[0].payload == {"name": "night", "times": 1}

    result = await sync_schedules(entries[:1], stack.config, client=client)
    assert result == {"upserted": ["jobworker-nightly"], "deleted": ["jobworker-minutely"]}
    assert sorted(stack.standin.schedules) == ["jobworker-nightly"]


async def test_sync_schedules_command_dry_run(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QSTASH_TOKEN", stack.config.token)
    monkeypatch.setenv("QSTASH_URL", stack.standin.url)
    monkeypatch.setenv("QSTASH_CALLBACK_URL", stack.config.callback_url)
    args = SimpleNamespace(tasks="tests.shared_jobs", schedules=None, dry_run=True, json=False)
    assert provider.main_sync_schedules(args) == 0  # type: ignore[arg-type]
    assert "would upsert jobworker-every_minute: * * * * * ->" in capsys.readouterr().out
    assert stack.standin.schedules == {}


def test_deduplication_ids() -> None:
    assert provider.deduplication_id() != provider.deduplication_id()
    assert provider.deduplication_id("user:1") == "user:1"
    hashed = provider.deduplication_id("naïve key")
    assert hashed == provider.deduplication_id("naïve key") and hashed.startswith("jwk-")
    assert re.fullmatch(r"[A-Za-z0-9_.:\-]+", hashed) and len(hashed) < 80
