"""Fixtures for the operator e2e tests: CRD, the chart's RBAC, a ServiceAccount kubeconfig, the operator
as a local subprocess, and real PostgreSQL databases.

Import them into a test module (tests/e2e is on sys.path, like conftest.py) with
``from operator_fixtures import ...``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
Kubectl = Callable[..., subprocess.CompletedProcess[str]]  # the conftest fixture's call signature

OPERATOR_NAMESPACE = "jobworker-system"
RESYNC_SECONDS = 2.0

__all__ = [
    "OperatorProcess",
    "jwp_crd",
    "operator",
    "operator_identity",
    "operator_kubeconfig",
    "pg_server",
    "pool_database",
    "wait_for",
]


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60, interval: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last value: {last!r})", pytrace=False)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------------------- CRD


@pytest.fixture(scope="session")
def jwp_crd(kubectl: Kubectl) -> str:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO_ROOT / "crds"))
    kubectl("wait", "--for=condition=Established", "crd/jobworkerpools.jobworker.dev", "--timeout=60s")
    return "jobworkerpools.jobworker.dev"


# ------------------------------------------------------------------------------------------------ RBAC


def rbac_from_chart(helm: Path) -> list[dict[str, Any]] | None:
    """The chart's ClusterRole + binding (+ namespaced Role if any), or None when the chart can't render."""
    chart = REPO_ROOT / "charts" / "jobworker"
    if not (chart / "templates" / "rbac.yaml").exists() or not helm.exists():
        return None
    proc = subprocess.run(
        [
            str(helm),
            "template",
            "e2e",
            str(chart),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--show-only",
            "templates/rbac.yaml",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        return None
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return docs or None


def rbac_from_contracts() -> list[dict[str, Any]]:
    """Fallback: the RBAC table of docs/contracts.md as one ClusterRole + binding."""
    text = (REPO_ROOT / "docs" / "contracts.md").read_text()
    section = text.split("## RBAC", 1)[1]
    rules = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("apiGroups", "") or set(cells[0]) <= {"-"}:
            continue
        group = "" if cells[0] == '""' else cells[0]
        rules.append(
            {
                "apiGroups": [group],
                "resources": [r.strip() for r in cells[1].split(",")],
                "verbs": [v.strip() for v in cells[2].split(",")],
            }
        )
    name = "e2e-jobworker-operator"
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": OPERATOR_NAMESPACE}],
        },
    ]


@dataclass(frozen=True)
class OperatorIdentity:
    service_account: str
    namespace: str
    source: str  # "chart" or "contracts.md"


@pytest.fixture(scope="session")
def operator_identity(kubectl: Kubectl, helm_bin: Path) -> OperatorIdentity:
    """Creates the operator's ServiceAccount and exactly the chart's RBAC for it."""
    docs, source = rbac_from_chart(helm_bin), "chart"
    if docs is None:
        docs, source = rbac_from_contracts(), "contracts.md"
    subjects = [s for d in docs if d["kind"].endswith("Binding") for s in d.get("subjects", [])]
    sa = subjects[0]
    kubectl("create", "namespace", sa["namespace"], check=False)
    kubectl("create", "serviceaccount", sa["name"], "-n", sa["namespace"], check=False)
    kubectl("apply", "-f", "-", input="\n---\n".join(yaml.safe_dump(d) for d in docs))
    return OperatorIdentity(sa["name"], sa["namespace"], source)


@pytest.fixture(scope="session")
def operator_kubeconfig(
    cluster: Any, kubectl: Kubectl, operator_identity: OperatorIdentity, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A kubeconfig that authenticates as the operator's ServiceAccount (a bound token)."""
    token = kubectl(
        "create", "token", operator_identity.service_account, "-n", operator_identity.namespace, "--duration=6h"
    ).stdout.strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    cluster_entry = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "operator",
        "clusters": [{"name": "local", "cluster": cluster_entry}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "local", "user": "operator"}}],
    }
    path = tmp_path_factory.mktemp("operator") / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


# -------------------------------------------------------------------------------------------- operator


@dataclass
class OperatorProcess:
    kubeconfig: Path
    log_path: Path
    scope: tuple[str, ...] = ("--all-namespaces",)
    """``--all-namespaces``, or ``--namespace NS`` pairs."""
    liveness_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "JOBWORKER_"))}
        env["KUBECONFIG"] = str(self.kubeconfig)
        cmd = [
            sys.executable,
            "-m",
            "jobworker_operator",
            *self.scope,
            "--bind-address",
            "127.0.0.1",
            "--liveness-port",
            str(self.liveness_port),
            "--metrics-port",
            str(self.metrics_port),
            "--resync-seconds",
            str(RESYNC_SECONDS),
        ]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
        log.close()
        wait_for("the operator's /healthz", self._healthy, timeout=60)

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"the operator exited with {self.proc.returncode}:\n{self.log_tail()}", pytrace=False)
        return self.http_status("healthz", self.liveness_port) == 200

    def http_status(self, path: str, port: int) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=2) as resp:
                return int(resp.status)
        except OSError:
            return 0

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def metric(self, name: str, **labels: str) -> float | None:
        want = {f'{k}="{v}"' for k, v in labels.items()}
        for line in self.metrics().splitlines():
            m = re.match(r"^([a-zA-Z_:]+)(?:\{(.*)\})? (\S+)$", line)
            if m and m.group(1) == name and want <= set(re.findall(r'\w+="[^"]*"', m.group(2) or "")):
                return float(m.group(3))
        return None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Stops only the process this fixture started, by its PID."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.liveness_port, self.metrics_port = free_port(), free_port()
        self.start()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@pytest.fixture(scope="session")
def operator(
    jwp_crd: str,
    operator_kubeconfig: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(operator_kubeconfig, tmp_path_factory.mktemp("operator-log") / "operator.log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        print(f"operator log: {proc.log_path}")


# ------------------------------------------------------------------------------------------ PostgreSQL


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """Embedded PostgreSQL on 127.0.0.1 (or JOBWORKER_TEST_DATABASE_URL) with a migrated template DB."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))  # tests/e2e is not a package, so `tests` may be unimportable
    from tests.pg import start_server

    yield from start_server()


@pytest.fixture
def pool_database(pg_server: Any) -> Iterator[str]:
    """URL of a fresh, migrated database for one pool."""
    url = str(pg_server.create_database())
    try:
        yield url
    finally:
        pg_server.drop_database(url)


def secret_manifest(namespace: str, name: str, url: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "data": {"url": base64.b64encode(url.encode()).decode()},
        }
    )
