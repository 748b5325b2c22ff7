"""The README's "Deploying on Kubernetes" commands, run literally as a new user would, on a real node.

The fenced block is read from README.md and run line by line in one bash session: `make cluster-up`, the
CRD, `helm install`, the Secret, `kubectl apply -f examples/pool.yaml`, `jobworker add`. The pool must become
Ready and its real worker pods must run the job. The block ends with `make cluster-down`, after which the
host must hold nothing the node created. Only the cluster's state directory differs from a user's
(JOBWORKER_CLUSTER_DIR), so that the test never touches a cluster the user started.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
from node_fixtures import REPO_ROOT, _flag, node_lib

pytestmark = pytest.mark.readme_path


def readme_block() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("## Deploying on Kubernetes", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "README's 'Deploying on Kubernetes' section has no ```sh block"
    return match.group(1)


def test_the_readme_commands_end_with_a_ready_pool_that_runs_a_job(k8s_bin_dir: Path) -> None:
    missing = node_lib().missing_host_tools()
    if missing:
        if _flag("JOBWORKER_REQUIRE_KUBELET"):
            pytest.fail(f"JOBWORKER_REQUIRE_KUBELET=1 but the real node needs {', '.join(missing)}", pytrace=False)
        pytest.skip(f"the real node needs {', '.join(missing)}")
    before = node_lib().host_snapshot()
    block = readme_block()
    assert "make cluster-down" in block.splitlines()[-1]
    state_dir = Path(tempfile.mkdtemp(prefix="jwreadme-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "DATABASE_URL", "VIRTUAL_ENV")}
    env["JOBWORKER_CLUSTER_DIR"] = str(state_dir)
    # Lines are echoed (set -x) so that a failure shows which README command failed.
    script = "set -euo pipefail\nset -x\n" + block
    proc = subprocess.run(
        ["bash", "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    output = proc.stdout + proc.stderr
    try:
        assert proc.returncode == 0, f"the README commands failed:\n{output[-8000:]}"
        assert "sending 'hello from the README' to ada@example.com" in proc.stdout, output[-8000:]
        pods = [line for line in proc.stdout.splitlines() if line.startswith("pod/app-worker-")]
        assert len(pods) == 2 and all("Running" in line and "jobworker-node" in line for line in pods), pods
        # `kubectl get jwp,pods -o wide`: NAME PROVIDER WORKERS QUEUE OLDEST READY AGE
        lines = proc.stdout.splitlines()
        pool = [line.split() for line in lines if line.startswith("jobworkerpool.jobworker.dev/app ")][-1]
        assert pool[1:3] == ["graphile", "2/2"] and "True" in pool, pool
        assert node_lib().host_snapshot() == before, "make cluster-down left host changes behind"
    finally:
        if proc.returncode != 0:
            subprocess.run(["bash", "hack/cluster-down.sh"], cwd=REPO_ROOT, env=env, timeout=300, check=False)
