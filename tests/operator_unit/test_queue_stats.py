"""A pool's database URL never reaches status, logs or events, whatever the Secret holds (issue 11, item 1).

The queue-stats path runs for real (``queue_stats.worker_utils_reader`` and libpq's parser), against an
in-memory API whose Secret holds a canary value.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest

from jobworker_operator import apply, queue_stats, reconcile
from tests.operator_unit.fake_api import FakeApi
from tests.operator_unit.helpers import body

CANARY = "CANARY7f3q"
# Each is a value someone could paste into the Secret; libpq's parse error of each quotes the canary.
PARSE_ERRORS = {
    "value-with-equals": f"{CANARY}=x",
    "bad-percent-escape": f"postgresql://app:pw%zz{CANARY}@127.0.0.1:1/db",
    "unescaped-at": f"postgresql://app:p@ss={CANARY}@127.0.0.1:1/db",
    "key-value-stray-word": f"host=127.0.0.1 port=1 password={CANARY} {CANARY}x",
    "unknown-query-parameter": f"postgresql://app@127.0.0.1:1/db?{CANARY}=1",
}
VALID_BUT_UNREACHABLE = {
    "url-password": f"postgresql://app:{CANARY}@127.0.0.1:1/db",
    "percent-encoded-password": f"postgresql://app:{CANARY}%2F%40x@127.0.0.1:1/db",
    "query-password": f"postgresql://app@127.0.0.1:1/db?password={CANARY}",
    "key-value-password": f"host=127.0.0.1 port=1 user=app password='{CANARY} x' connect_timeout=2",
}


class SecretApi(FakeApi):
    """FakeApi with a real Secret object, read by the real ``Api.read_secret`` (base64 decoding included)."""

    read_secret = apply.Api.read_secret

    def __init__(self, pool: dict[str, Any], secret: bytes) -> None:
        super().__init__(pool)
        self.objects[("Secret", "db")] = {"data": {"url": base64.b64encode(secret).decode()}}


async def degraded_after_a_stats_pass(secret: bytes) -> tuple[dict[str, Any], Any]:
    api = SecretApi(body(name="pool", migration={"enabled": False}), secret)
    rt = reconcile.Runtime(api=api, reader=queue_stats.worker_utils_reader)
    await rt.trigger("ns", "pool", refresh_stats=True)
    cond = next(c for c in api.pool()["status"]["conditions"] if c["type"] == "Degraded")
    return cond, api


@pytest.mark.parametrize("value", PARSE_ERRORS.values(), ids=PARSE_ERRORS.keys())
async def test_an_unparseable_url_is_a_fixed_message_naming_the_secret(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        cond, api = await degraded_after_a_stats_pass(value.encode())
    assert cond["status"] == "True"
    assert "the database URL in Secret ns/db key 'url' is not a valid PostgreSQL connection string" in cond["message"]
    assert CANARY not in str(api.pool()["status"])
    assert CANARY not in caplog.text


@pytest.mark.parametrize("value", VALID_BUT_UNREACHABLE.values(), ids=VALID_BUT_UNREACHABLE.keys())
async def test_connection_errors_never_show_the_password(value: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        cond, api = await degraded_after_a_stats_pass(value.encode())
    assert cond["status"] == "True"
    assert "database unreachable" in cond["message"]
    assert CANARY not in str(api.pool()["status"])
    assert CANARY not in caplog.text


@pytest.mark.parametrize("secret", [b"postgresql://app:\xff\xfe@db/x", b"\x80"], ids=["latin1-password", "binary"])
async def test_a_secret_that_is_not_utf8_degrades_the_pool(secret: bytes) -> None:
    cond, _ = await degraded_after_a_stats_pass(secret)
    assert cond["status"] == "True"
    assert "Secret ns/db key 'url' is not UTF-8 text" in cond["message"]


def test_the_operator_log_masks_every_secret_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    # Whoever logs it (kopf's handler failures, a library's retry warning), a seen secret is masked.
    monkeypatch.setattr(queue_stats, "SEEN_SECRETS", {f"pw{CANARY}"})
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler, poster = Collect(), Collect()  # poster: where kopf's K8sPoster sits, on kopf.objects itself
    root, objects = logging.getLogger(), logging.getLogger("kopf.objects")
    root.addHandler(handler)
    objects.addHandler(poster)
    try:
        queue_stats.install_log_redaction()
        logging.getLogger("kopf.objects").error("Handler failed: %s", f"could not use pw{CANARY} as a URL")
        try:
            raise RuntimeError(f"connect to postgresql://u:pw{CANARY}@db failed")
        except RuntimeError:
            logging.getLogger("psycopg.pool").exception("error connecting")
    finally:
        root.removeHandler(handler)
        objects.removeHandler(poster)
        objects.filters = [f for f in objects.filters if not isinstance(f, queue_stats.db.RedactingFilter)]
        for h in root.handlers:
            h.filters = [f for f in h.filters if not isinstance(f, queue_stats.db.RedactingFilter)]
    # kopf.objects' record twice (its own handler, then the root's), psycopg's once
    assert [line.split(":")[0].splitlines()[0] for line in lines] == [
        "Handler failed",
        "Handler failed",
        "error connecting",
    ]
    assert not any(CANARY in line for line in lines), lines


def test_redact_hides_passwords_in_every_connection_string_form() -> None:
    assert queue_stats.redact("failed: postgresql://app:s3cret@db:5432/x") == "failed: postgresql://app:***@db:5432/x"
    assert "s3cret" not in queue_stats.redact("postgresql://db/x?user=app&password=s3cret&sslmode=require")
    assert "sslmode=require" in queue_stats.redact("postgresql://db/x?user=app&password=s3cret&sslmode=require")
    assert "s3cret" not in queue_stats.redact("host=db user=app password=s3cret dbname=x")
    assert "s3 cret" not in queue_stats.redact("host=db password='s3 cret' dbname=x")
    assert queue_stats.redact("host=db password='s3 cret' dbname=x").endswith("dbname=x")
