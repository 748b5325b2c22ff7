"""db.check_database_url / secret_parts / redact: a connection string's secrets never reach a message."""

from __future__ import annotations

import io
import logging

import psycopg
import pytest
from psycopg import conninfo

from jobworker import db, errors

CANARY = "CANARYu5x1"
URLS = [
    f"postgresql://app:{CANARY}@db:5432/x",
    f"postgresql://app:{CANARY}%40%25x@db/x",
    f"postgresql://db/x?user=app&password={CANARY}",
    f"host=db user=app password='{CANARY} with space'",
    f"{CANARY}=x",
    f"postgresql://app:pw%zz{CANARY}@db/x",
    f"host=db {CANARY}",
]


@pytest.mark.parametrize("url", URLS)
def test_libpq_messages_about_a_url_show_none_of_its_secrets(url: str) -> None:
    try:
        conninfo.conninfo_to_dict(url)
        message = f"connection to {url} failed; password {conninfo.conninfo_to_dict(url).get('password')}"
    except psycopg.Error as exc:
        message = str(exc)
    assert CANARY not in db.redact(message, db.secret_parts(url))


@pytest.mark.parametrize("url", [*URLS[4:], f"postgresql://app:p@ss={CANARY}@db/x"])
def test_an_unparseable_url_is_a_fixed_message_naming_its_source(url: str) -> None:
    with pytest.raises(errors.ConfigurationError) as caught:
        db.check_database_url(url, "DATABASE_URL")
    assert str(caught.value).startswith("DATABASE_URL is not a valid PostgreSQL connection string")
    assert CANARY not in str(caught.value)


def test_short_secret_parts_are_not_masked_everywhere() -> None:
    assert db.redact("password authentication failed for user app", db.secret_parts("postgresql://app:pw@db/x")) == (
        "password authentication failed for user app"
    )


def test_the_log_filter_masks_messages_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(db.RedactingFilter(lambda: db.secret_parts(f"postgresql://app:{CANARY}@db/x")))
    logger = logging.getLogger("test_database_url")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("retrying %s", f"host=db password={CANARY}")
        try:
            raise OSError(f"cannot connect with {CANARY}")
        except OSError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    assert "retrying" in stream.getvalue() and "OSError" in stream.getvalue()
    assert CANARY not in stream.getvalue()
