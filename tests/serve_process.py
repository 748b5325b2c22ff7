"""``jobworker serve`` as a real process, for the endpoint tests: start it, sign requests for it, read its calls."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.qstash_standin import signature

REPO = Path(__file__).resolve().parents[1]
CURRENT = "sig_current_" + "c" * 24
NEXT = "sig_next_" + "n" * 27


@dataclass
class Served:
    base: str
    proc: subprocess.Popen[bytes]
    calls_file: Path
    workdir: Path

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    def url(self, name: str) -> str:
        """The destination URL (what the signature's ``sub`` must be)."""
        return f"{self.base}/v1/jobs/run/{name}"

    def sign(self, name: str, body: bytes, /, **claims: Any) -> str:
        return signature(CURRENT, self.url(name), body, **claims)

    def calls(self) -> list[dict[str, Any]]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines()]

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS line")

    def alive(self) -> bool:
        return self.proc.poll() is None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(*args: str, env: dict[str, str] | None = None, tasks: str = "tests.endpoint_jobs") -> Iterator[Served]:
    """Run ``jobworker serve`` on a free loopback port until the block ends; its stderr is checked for tracebacks."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="jobworker-serve-"))
    base = f"http://127.0.0.1:{port}"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBWORKER_", "QSTASH_"))}
    child_env.update(
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
        QSTASH_CURRENT_SIGNING_KEY=CURRENT,
        QSTASH_NEXT_SIGNING_KEY=NEXT,
        QSTASH_CALLBACK_URL=base,
        ENDPOINT_TEST_CALLS=str(workdir / "calls.jsonl"),
    )
    child_env.update(env or {})
    argv = [sys.executable, "-m", "jobworker", "serve", "--tasks", tasks, "--host", "127.0.0.1", "--port", str(port)]
    try:
        with open(workdir / "stderr.log", "wb") as stderr:
            proc = subprocess.Popen([*argv, *args], env=child_env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr)
    except BaseException:
        shutil.rmtree(workdir)
        raise
    served = Served(base, proc, workdir / "calls.jsonl", workdir)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (workdir / "stderr.log").read_text()
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("jobworker serve never answered /healthz") from None
                time.sleep(0.05)
        yield served
        assert proc.poll() is None, "jobworker serve died: " + (workdir / "stderr.log").read_text()
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log = (workdir / "stderr.log").read_text(errors="replace")
        shutil.rmtree(workdir)
    assert "Traceback" not in log and "Error handling request" not in log, log
