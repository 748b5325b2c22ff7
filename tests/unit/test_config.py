from __future__ import annotations

import pytest

from jobworker import errors
from jobworker.config import DEFAULT_QSTASH_URL, JobsConfig, QStashConfig

GOOD = {
    "JOBS_PROVIDER": "qstash",
    "QSTASH_TOKEN": "tok",
    "QSTASH_URL": "http://127.0.0.1:8081/",
    "QSTASH_CURRENT_SIGNING_KEY": "sig_current",
    "QSTASH_NEXT_SIGNING_KEY": "sig_next",
    "QSTASH_CALLBACK_URL": "https://api.example.com/",
}


def test_provider_defaults_to_noop() -> None:
    assert JobsConfig.from_env({}).provider == "noop"
    assert JobsConfig.from_env({"JOBS_PROVIDER": " NOOP "}).provider == "noop"


def test_unknown_provider() -> None:
    with pytest.raises(errors.ConfigurationError, match="JOBS_PROVIDER 'redis' is not one of graphile, qstash, noop"):
        JobsConfig.from_env({"JOBS_PROVIDER": "redis"})


def test_graphile_needs_a_database_url() -> None:
    with pytest.raises(errors.ConfigurationError, match="JOBS_PROVIDER=graphile needs DATABASE_URL"):
        JobsConfig.from_env({"JOBS_PROVIDER": "graphile"})
    config = JobsConfig.from_env({"JOBS_PROVIDER": "graphile", "DATABASE_URL": "postgresql://x/y"})
    assert (config.provider, config.database_url) == ("graphile", "postgresql://x/y")


def test_qstash_config_is_read_and_normalised() -> None:
    config = JobsConfig.from_env(GOOD)
    assert config.qstash == QStashConfig(
        token="tok",
        url="http://127.0.0.1:8081",
        current_signing_key="sig_current",
        next_signing_key="sig_next",
        callback_url="https://api.example.com",
    )
    assert config.qstash.destination("send_email") == "https://api.example.com/v1/jobs/run/send_email"
    without_url = {k: v for k, v in GOOD.items() if k != "QSTASH_URL"}
    assert QStashConfig.from_env(without_url).url == DEFAULT_QSTASH_URL


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("QSTASH_TOKEN", "", "QSTASH_TOKEN is not set"),
        ("QSTASH_CURRENT_SIGNING_KEY", "", "QSTASH_CURRENT_SIGNING_KEY is not set"),
        ("QSTASH_NEXT_SIGNING_KEY", "", "QSTASH_NEXT_SIGNING_KEY is not set"),
        ("QSTASH_CALLBACK_URL", "", "QSTASH_CALLBACK_URL is not set"),
        ("QSTASH_CALLBACK_URL", "api.example.com", "QSTASH_CALLBACK_URL 'api.example.com' is not an http"),
        ("QSTASH_CALLBACK_URL", "https://a.example.com/?x=1", "QSTASH_CALLBACK_URL .* must not have a query string"),
        ("QSTASH_URL", "qstash.upstash.io", "QSTASH_URL 'qstash.upstash.io' is not an http"),
        ("QSTASH_URL", "https://qstash.upstash.io/v2", "QSTASH_URL .* must be the server's base URL"),
        ("QSTASH_TOKEN", "two words", "QSTASH_TOKEN contains whitespace"),
    ],
)
def test_each_bad_variable_gets_its_own_sentence(name: str, value: str, message: str) -> None:
    with pytest.raises(errors.ConfigurationError, match=f"^QStash configuration: {message}") as caught:
        JobsConfig.from_env({**GOOD, name: value})
    assert str(caught.value).count(";") == 0  # only the one problem is reported


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(errors.ConfigurationError) as caught:
        JobsConfig.from_env({"JOBS_PROVIDER": "qstash", "QSTASH_URL": "nope"})
    message = str(caught.value)
    for name in (
        "QSTASH_TOKEN",
        "QSTASH_URL",
        "QSTASH_CURRENT_SIGNING_KEY",
        "QSTASH_NEXT_SIGNING_KEY",
        "QSTASH_CALLBACK_URL",
    ):
        assert name in message


def test_roles_need_only_their_variables() -> None:
    receive_only = {k: v for k, v in GOOD.items() if k != "QSTASH_TOKEN"}
    assert QStashConfig.from_env(receive_only, publish=False).current_signing_key == "sig_current"
    publish_only = {k: v for k, v in GOOD.items() if "SIGNING" not in k}
    assert QStashConfig.from_env(publish_only, receive=False).token == "tok"
