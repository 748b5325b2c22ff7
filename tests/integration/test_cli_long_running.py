"""`jobworker scheduler` and `jobworker serve` as real processes: health, clean stop, one-line startup errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from jobworker.devdb import free_port

ROOT = Path(__file__).resolve().parent.parent.parent


def _env(db_url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": db_url, "PYTHONPATH": str(ROOT), **extra}


def _wait_healthy(port: int, proc: subprocess.Popen[str], deadline_s: float = 30) -> bytes:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                return bytes(resp.read())
        except OSError:
            time.sleep(0.1)
    pytest.fail("the process never answered /healthz")


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "jobworker", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_scheduler_serves_health_and_stops_cleanly_on_sigterm(db_url: str) -> None:
    port = free_port()
    proc = _start(
        ["scheduler", "--tasks", "examples.tasks", "--schedules", "examples/schedules.yaml", "--http-port", str(port)],
        _env(db_url),
    )
    try:
        assert b"ok" in _wait_healthy(port, proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_scheduler_rejects_a_bad_schedule_in_one_line_naming_the_entry(db_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "schedules.yaml"
    bad.write_text("- {id: broken, task: send_email, cron: '61 * * * *'}\n")
    result = subprocess.run(
        [sys.executable, "-m", "jobworker", "scheduler", "--tasks", "examples.tasks", "--schedules", str(bad)],
        env=_env(db_url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "broken" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_needs_its_qstash_settings_and_then_serves_health(db_url: str) -> None:
    missing = subprocess.run(
        [sys.executable, "-m", "jobworker", "serve", "--tasks", "examples.tasks"],
        env=_env(db_url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2
    assert "QSTASH_CURRENT_SIGNING_KEY" in missing.stderr and "Traceback" not in missing.stderr

    port = free_port()
    env = _env(
        db_url,
        QSTASH_TOKEN="test-token",
        QSTASH_URL="http://127.0.0.1:9",
        QSTASH_CURRENT_SIGNING_KEY="sig_current",
        QSTASH_NEXT_SIGNING_KEY="sig_next",
        QSTASH_CALLBACK_URL="https://jobs.example.com",
    )
    proc = _start(["serve", "--tasks", "examples.tasks", "--host", "127.0.0.1", "--port", str(port)], env)
    try:
        _wait_healthy(port, proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_worker_on_a_schema_without_jobworkers_migration_fails_in_one_line(db_url: str) -> None:
    """graphile-worker's own `--schema-only` installs migrations 1..19 but not jobworker's heartbeat table."""
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("drop table graphile_worker.jobworker_migrations")
        conn.execute("drop function graphile_worker.worker_heartbeat(text, json)")
    result = subprocess.run(
        [sys.executable, "-m", "jobworker", "worker", "--tasks", "examples.tasks", "--once"],
        env=_env(db_url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "jobworker migrate" in errors[0], result.stderr


def test_a_port_in_use_is_one_line_error(db_url: str) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = _env(
            db_url,
            QSTASH_CURRENT_SIGNING_KEY="sig_current",
            QSTASH_NEXT_SIGNING_KEY="sig_next",
            QSTASH_CALLBACK_URL="https://jobs.example.com",
        )
        for args in (
            ["serve", "--tasks", "examples.tasks", "--host", "127.0.0.1", "--port", str(port)],
            [
                "scheduler",
                "--tasks",
                "examples.tasks",
                "--schedules",
                "examples/schedules.yaml",
                "--http-port",
                f"{port}",
            ],
        ):
            result = subprocess.run(
                [sys.executable, "-m", "jobworker", *args],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 1, result.stderr
            assert "Traceback" not in result.stderr, result.stderr
            errors = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
            assert len(errors) == 1 and "address already in use" in errors[0], result.stderr


def test_scheduler_without_schedules_stays_up_and_healthy(db_url: str, tmp_path: Path) -> None:
    # The operator runs a scheduler for every pool by default: a pool whose tasks define no schedule
    # must not crash-loop (it exited 2, so the pool never became Ready on a real node).
    (tmp_path / "plain_tasks.py").write_text(
        "from jobworker import JobContext, define_job\n\n"
        "@define_job('plain', payload=dict)\n"
        "def plain(payload: dict, ctx: JobContext) -> None:\n"
        "    pass\n"
    )
    port = free_port()
    proc = _start(
        ["scheduler", "--tasks", "plain_tasks", "--http-port", str(port)],
        _env(db_url, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}"),
    )
    try:
        assert b"ok" in _wait_healthy(port, proc)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "no schedules" in proc.communicate()[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
