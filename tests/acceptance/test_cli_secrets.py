"""The CLI never prints a database URL's secrets: not in its one error line, not in its logs (issue 11, item 1)."""

from __future__ import annotations

import pytest

from tests.acceptance.helpers import TASKS, jobworker, jobworker_many

CANARY = "CANARY9k2w"
UNPARSEABLE = {
    "value-with-equals": f"{CANARY}=x",
    "bad-percent-escape": f"postgresql://app:pw%zz{CANARY}@127.0.0.1:1/db",
    "unescaped-at": f"postgresql://app:p@ss={CANARY}@127.0.0.1:1/db",
    "key-value-stray-word": f"host=127.0.0.1 port=1 password={CANARY} {CANARY}x",
}
COMMANDS = [["migrate"], ["worker", "--tasks", TASKS, "--once"], ["scheduler", "--tasks", TASKS]]


@pytest.mark.parametrize("value", UNPARSEABLE.values(), ids=UNPARSEABLE.keys())
def test_an_unparseable_database_url_is_one_fixed_line_naming_its_variable(value: str) -> None:
    for result in jobworker_many(value, COMMANDS):
        assert result.code == 2, result.describe()
        assert "error: DATABASE_URL is not a valid PostgreSQL connection string" in result.stderr, result.describe()
        assert CANARY not in result.stderr + result.stdout, result.describe()


def test_the_flag_and_the_worker_variable_are_named_too() -> None:
    bad = f"postgresql://app:pw%zz{CANARY}@127.0.0.1:1/db"
    flag = jobworker("postgresql://127.0.0.1:1/x", "--database-url", bad, "list")
    assert flag.code == 2 and "error: --database-url is not a valid" in flag.stderr, flag.describe()
    worker = jobworker(
        "postgresql://127.0.0.1:1/x", "worker", "--tasks", TASKS, "--once", env={"WORKER_DATABASE_URL": bad}
    )
    assert worker.code == 2 and "error: WORKER_DATABASE_URL is not a valid" in worker.stderr, worker.describe()
    assert CANARY not in flag.stderr + worker.stderr


def test_a_database_error_quoting_the_url_is_masked() -> None:
    # The server never sees this database; its name is the password, so the "does not exist" error would show it.
    result = jobworker(f"postgresql://app:{CANARY}@127.0.0.1:1/{CANARY}", "migrate")
    assert result.code == 1, result.describe()
    assert CANARY not in result.stderr + result.stdout, result.describe()
