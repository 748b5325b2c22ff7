"""CLI flags: help defaults come from settings.py (written once), and renamed flags keep their old spelling
for one release, with a warning (issue 14, item 4)."""

from __future__ import annotations

import dataclasses
import re

import pytest

from jobworker import cli
from jobworker.settings import EndpointSettings, WorkerSettings

WORKER_FLAGS = {
    "--concurrency": "concurrency",
    "--poll-interval": "poll_interval",
    "--graceful-shutdown": "graceful_shutdown",
    "--heartbeat-interval": "heartbeat_interval",
    "--sweep-threshold": "sweep_threshold",
}
SERVE_FLAGS = {
    "--host": "host",
    "--port": "port",
    "--max-body-bytes": "max_body_bytes",
    "--max-concurrency": "max_concurrency",
    "--body-timeout": "body_timeout",
    "--replay-timeout": "replay_timeout",
}


def help_of(command: str, flag: str) -> str:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, cli.argparse._SubParsersAction))
    action = next(a for a in sub.choices[command]._actions if flag in a.option_strings)
    return str(action.help)


def default_in(text: str) -> str:
    match = re.search(r"default(?::? \$JOBS_CONCURRENCY or)? ([^;)]+)", text)
    assert match, text
    return match.group(1)


@pytest.mark.parametrize(
    ("command", "settings", "flags"),
    [("worker", WorkerSettings, WORKER_FLAGS), ("serve", EndpointSettings, SERVE_FLAGS)],
)
def test_help_defaults_follow_the_settings(
    monkeypatch: pytest.MonkeyPatch, command: str, settings: type, flags: dict[str, str]
) -> None:
    # Change every default in settings.py; the help must follow without another edit.
    fields = {f.name: f for f in dataclasses.fields(settings)}
    changed = {"float": 7.0, "int": 3 * 1024 * 1024, "str": "192.0.2.1"}
    for name in flags.values():
        monkeypatch.setattr(fields[name], "default", changed[type(fields[name].default).__name__])
    shown = {flag: default_in(help_of(command, flag)) for flag in flags}
    want = {"float": "7s", "int": "3 MiB", "str": "192.0.2.1"}
    assert shown == {flag: want[type(fields[name].default).__name__] for flag, name in flags.items()}


def test_help_states_todays_defaults() -> None:
    assert default_in(help_of("worker", "--poll-interval")) == "2s"
    assert default_in(help_of("worker", "--concurrency")) == "2"
    assert default_in(help_of("serve", "--max-body-bytes")) == "1 MiB"
    assert default_in(help_of("serve", "--port")) == "8080"
    assert default_in(help_of("sweep-stale-workers", "--orphan-threshold")) == "4h"


@pytest.mark.parametrize(
    ("old", "new", "dest"),
    [
        (["cleanup", "--task", "gc-job-queues"], ["cleanup", "--operation", "gc-job-queues"], "operation"),
        (["workers", "--threshold", "1m"], ["workers", "--sweep-threshold", "1m"], "sweep_threshold"),
        (["dashboard", "--stale-after", "1m"], ["dashboard", "--sweep-threshold", "1m"], "stale_after"),
    ],
)
def test_an_old_spelling_still_works_and_warns(
    capsys: pytest.CaptureFixture[str], old: list[str], new: list[str], dest: str
) -> None:
    parser = cli.build_parser()
    assert getattr(parser.parse_args(old), dest) == getattr(parser.parse_args(new), dest)
    err = capsys.readouterr().err
    assert err == f"warning: {old[1]} is deprecated and will be removed in the next release; use {new[1]}\n"


def test_the_old_and_new_cleanup_spellings_add_up_and_warn_once(capsys: pytest.CaptureFixture[str]) -> None:
    args = cli.build_parser().parse_args(
        ["cleanup", "--task", "gc-job-queues", "--operation", "gc-task-identifiers", "--task", "gc-job-queues"]
    )
    assert args.operation == ["gc-job-queues", "gc-task-identifiers", "gc-job-queues"]
    assert capsys.readouterr().err.count("warning:") == 1


def test_the_old_cleanup_spelling_still_checks_its_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args(["cleanup", "--task", "gc-everything"])
    assert exited.value.code == cli.EXIT_USAGE
    assert "invalid choice: 'gc-everything'" in capsys.readouterr().err
