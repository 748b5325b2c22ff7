"""Which QSTASH_CALLBACK_URL values the endpoint and the qstash provider accept."""

from __future__ import annotations

import pytest

from jobworker import errors
from jobworker.config import QStashConfig
from jobworker.endpoint import check_callback_url
from jobworker.providers.qstash import QStashJobQueue


@pytest.mark.parametrize(
    "url",
    [
        "https://jobs.example.com",
        "https://jobs.example.com:8443/base",
        "http://localhost:8080",
        "http://api.localhost",
        "http://127.0.0.1:9000",
        "http://127.8.9.1",
        "http://[::1]:8080",
    ],
)
def test_https_and_loopback_http_are_accepted(url: str) -> None:
    check_callback_url(url)


@pytest.mark.parametrize(
    "url", ["http://jobs.example.com", "http://10.0.0.7", "http://localhost.evil.com", "http://[::2]", "ws://x.io"]
)
def test_other_urls_are_refused_naming_the_variable(url: str) -> None:
    with pytest.raises(errors.ConfigurationError, match=r"QSTASH_CALLBACK_URL .* use https://"):
        check_callback_url(url)


def test_the_provider_refuses_to_publish_to_plain_http() -> None:
    config = QStashConfig(token="t", callback_url="http://jobs.example.com")
    with pytest.raises(errors.ConfigurationError, match="QSTASH_CALLBACK_URL"):
        QStashJobQueue(config, client=object())  # type: ignore[arg-type]
