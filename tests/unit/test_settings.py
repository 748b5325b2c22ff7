"""WorkerSettings: defaults, JOBWORKER_* env vars (and JOBS_CONCURRENCY), overrides, validation."""

from __future__ import annotations

import dataclasses

import pytest

from jobworker import errors
from jobworker.settings import WorkerSettings


def test_defaults() -> None:
    s = WorkerSettings()
    assert (s.concurrency, s.poll_interval, s.queues, s.forbidden_flags) == (2, 2.0, None, None)
    assert (s.batch, s.batch_size, s.graceful_shutdown, s.heartbeat_interval) == (False, 500, 30.0, 15.0)
    assert WorkerSettings.from_env({}) == s


def test_env_vars_set_every_kind_of_field() -> None:
    s = WorkerSettings.from_env(
        {
            "JOBWORKER_CONCURRENCY": "8",
            "JOBWORKER_POLL_INTERVAL": "500ms",
            "JOBWORKER_GRACEFUL_SHUTDOWN": "1m",
            "JOBWORKER_QUEUES": "mail, billing ,",
            "JOBWORKER_FORBIDDEN_FLAGS": "gpu",
            "JOBWORKER_BATCH": "true",
            "JOBWORKER_WORKER_ID": "w-1",
            "JOBWORKER_HTTP_PORT": "9100",
        }
    )
    assert (s.concurrency, s.poll_interval, s.graceful_shutdown) == (8, 0.5, 60.0)
    assert (s.queues, s.forbidden_flags, s.batch) == (("mail", "billing"), ("gpu",), True)
    assert (s.worker_id, s.http_port) == ("w-1", 9100)


def test_jobs_concurrency_is_read_when_jobworker_concurrency_is_unset() -> None:
    assert WorkerSettings.from_env({"JOBS_CONCURRENCY": "5"}).concurrency == 5
    both = {"JOBS_CONCURRENCY": "5", "JOBWORKER_CONCURRENCY": "3"}
    assert WorkerSettings.from_env(both).concurrency == 3


def test_explicit_overrides_win_and_none_is_ignored() -> None:
    s = WorkerSettings.from_env({"JOBWORKER_CONCURRENCY": "8"}, concurrency=4, poll_interval=None)
    assert (s.concurrency, s.poll_interval) == (4, 2.0)
    assert s.with_(batch=True).batch is True and s.batch is False


@pytest.mark.parametrize("raw", ["false", "0", "no", "off", ""])
def test_false_booleans(raw: str) -> None:
    assert WorkerSettings.from_env({"JOBWORKER_BATCH": raw}).batch is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JOBWORKER_CONCURRENCY": "many"}, "JOBWORKER_CONCURRENCY: 'many' is not a valid"),
        ({"JOBS_CONCURRENCY": "0"}, "concurrency: 0 must be an integer of at least 1"),
        ({"JOBWORKER_POLL_INTERVAL": "soon"}, "poll_interval: 'soon' is not a duration"),
        ({"JOBWORKER_POLL_INTERVAL": "0"}, "poll_interval: must be greater than 0"),
        ({"JOBWORKER_BATCH_SIZE": "0"}, "batch_size: must be at least 1"),
    ],
)
def test_bad_values_are_refused_naming_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(errors.ConfigurationError) as caught:
        WorkerSettings.from_env(env)
    assert str(caught.value).startswith(message)


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        WorkerSettings().concurrency = 3  # type: ignore[misc]


def test_a_sweep_threshold_under_3x_the_heartbeat_interval_is_refused() -> None:
    # The sweep would take a live worker for dead between two heartbeats.
    with pytest.raises(errors.ConfigurationError, match="sweep_threshold: 40s is under 3x heartbeat_interval"):
        WorkerSettings(heartbeat_interval=15, sweep_threshold=40)
    assert WorkerSettings.from_env({"JOBWORKER_HEARTBEAT_INTERVAL": "100ms", "JOBWORKER_SWEEP_THRESHOLD": "1s"})
