"""``jobworker serve --port 0`` listens on a port the OS picks and logs it (it used to bind 8080)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.serve_process import REPO


def test_port_0_binds_a_free_port_and_logs_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBWORKER_", "QSTASH_"))}
    env.update(
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
        QSTASH_CURRENT_SIGNING_KEY="sig_current",
        QSTASH_NEXT_SIGNING_KEY="sig_next",
        QSTASH_CALLBACK_URL="http://127.0.0.1",
    )
    argv = [sys.executable, "-m", "jobworker", "serve", "--tasks", "tests.endpoint_jobs", "--host", "127.0.0.1"]
    with tempfile.TemporaryDirectory(prefix="jobworker-port0-") as tmp:
        log_path = Path(tmp) / "stderr.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([*argv, "--port", "0"], env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=log)
        try:
            deadline = time.monotonic() + 60
            while not (found := re.search(r"serving \d+ jobs on http://127\.0\.0\.1:(\d+)/", log_path.read_text())):
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "no 'serving' line: " + log_path.read_text()
                time.sleep(0.05)
            port = int(found[1])
            assert port not in (0, 8080), log_path.read_text()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as reply:
                assert reply.status == 200
        finally:
            proc.terminate()
            assert proc.wait(timeout=30) == 0, log_path.read_text()
        assert "Traceback" not in log_path.read_text()
