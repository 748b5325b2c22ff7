"""mypy rejects enqueueing a payload of the wrong type, and accepts the right one.

Runs the real mypy on a snippet, for a pydantic-model payload and a TypedDict payload, through the
JobQueue port and through GraphileJobQueue.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

WORKER_IMAGE = Path(__file__).resolve().parents[2] / "worker_image"

SNIPPET = """
from __future__ import annotations

from typing import TypedDict

import pydantic

from jobworker.jobs import JobContext, define_job
from jobworker.providers.graphile import GraphileJobQueue
from jobworker.queue import JobQueue


class CleanupPayload(pydantic.BaseModel):
    older_than_days: int


class WrongPayload(pydantic.BaseModel):
    name: str


class ReportParams(TypedDict):
    month: str


class WrongParams(TypedDict):
    month: int


@define_job("cleanup", payload=CleanupPayload)
async def cleanup_job(payload: CleanupPayload, ctx: JobContext) -> None: ...


@define_job("report", payload=ReportParams)
async def report_job(payload: ReportParams, ctx: JobContext) -> None: ...


async def through_the_port(queue: JobQueue) -> None:
    await queue.enqueue(cleanup_job, CleanupPayload(older_than_days=3))  # ok: model
    await queue.enqueue(cleanup_job, WrongPayload(name="x"))  # wrong: model
    await queue.enqueue(report_job, ReportParams(month="2024-01"))  # ok: typeddict
    await queue.enqueue(report_job, {"month": "2024-02"})  # ok: typeddict literal
    await queue.enqueue(report_job, WrongParams(month=1))  # wrong: typeddict
    await queue.enqueue(report_job, {"month": 2})  # wrong: typeddict literal


async def through_graphile() -> None:
    queue = GraphileJobQueue("postgresql://localhost/jobs")
    await queue.enqueue(cleanup_job, CleanupPayload(older_than_days=3), job_key="c")  # ok: graphile
    await queue.enqueue(cleanup_job, WrongPayload(name="x"), job_key="c")  # wrong: graphile
"""

MYPY_INI = f"""
[mypy]
strict = True
mypy_path = {WORKER_IMAGE}
ignore_missing_imports = True

[mypy-jobworker.*]
# Only the snippet is on trial here; the package has its own mypy run.
ignore_errors = True
"""

ERROR = re.compile(r"^snippet\.py:(\d+): error: (.*?)\s+\[([\w-]+)\]$")


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[int, list[tuple[str, str]]], str]:
    root = tmp_path_factory.mktemp("typing")
    (root / "snippet.py").write_text(textwrap.dedent(SNIPPET))
    (root / "mypy.ini").write_text(MYPY_INI)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--cache-dir", str(root / ".cache"), "snippet.py"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    found: dict[int, list[tuple[str, str]]] = {}
    for line in proc.stdout.splitlines():
        match = ERROR.match(line)
        if match:
            found.setdefault(int(match[1]), []).append((match[3], match[2]))
    return proc.returncode, found, proc.stdout + proc.stderr


def lines_marked(marker: str) -> list[int]:
    lines = textwrap.dedent(SNIPPET).splitlines()
    return [n for n, text in enumerate(lines, start=1) if text.rstrip().endswith(marker)]


# mypy reports a mismatch between a definition's payload type and the payload either as arg-type, or,
# because JobDefinition is invariant in its payload type, as "Cannot infer value of type parameter" (misc).
REJECTION_CODES = {"arg-type", "misc", "dict-item", "typeddict-item"}


@pytest.mark.parametrize(
    "marker", ["# wrong: model", "# wrong: typeddict", "# wrong: typeddict literal", "# wrong: graphile"]
)
def test_mypy_rejects_a_payload_of_the_wrong_type(
    mypy_errors: tuple[int, dict[int, list[tuple[str, str]]], str], marker: str
) -> None:
    returncode, found, output = mypy_errors
    assert returncode == 1, output
    [line] = lines_marked(marker)
    assert line in found, f"mypy accepted the wrong payload on line {line}:\n{output}"
    codes = {code for code, _ in found[line]}
    assert codes & REJECTION_CODES, output
    messages = " ".join(message for _, message in found[line])
    assert "enqueue" in messages or "TypedDict" in messages, output


# A bare dict literal for a TypedDict payload is typed before mypy solves P, so without the TypedDict
# as its context; mypy then rejects even a correct literal. Users write ReportParams(...) instead.
LITERAL_LIMITATION = pytest.mark.xfail(strict=True, reason="mypy types the dict literal before it solves P")


@pytest.mark.parametrize(
    "marker",
    [
        "# ok: model",
        "# ok: typeddict",
        pytest.param("# ok: typeddict literal", marks=LITERAL_LIMITATION),
        "# ok: graphile",
    ],
)
def test_mypy_accepts_the_right_payload_type(
    mypy_errors: tuple[int, dict[int, list[tuple[str, str]]], str], marker: str
) -> None:
    _, found, output = mypy_errors
    [line] = lines_marked(marker)
    assert line not in found, output


def test_mypy_reports_nothing_else(mypy_errors: tuple[int, dict[int, list[tuple[str, str]]], str]) -> None:
    _, found, output = mypy_errors
    markers = ["# wrong: model", "# wrong: typeddict", "# wrong: typeddict literal", "# wrong: graphile"]
    expected = {n for marker in markers for n in lines_marked(marker)}
    expected |= set(lines_marked("# ok: typeddict literal"))  # LITERAL_LIMITATION
    assert set(found) == expected, output
