"""Fixtures for the e2e tests: a real local Kubernetes control plane (hack/cluster.py).

Two clusters, two kinds of node:
  * ``cluster``/``kubectl``: kwok's fake node only. test_cluster, test_chart, test_monitoring, test_operator
    (the operator as a local process): validation, RBAC, many pools, status and scaling logic.
  * ``node_cluster``/``node_kubectl`` (node_fixtures.py): a real kubelet node beside kwok's. test_real_node
    and test_readme_path: the images, the operator in-cluster, and every pod it renders, run for real.

Environment:
  JOBWORKER_REQUIRE_CLUSTER=1  build the binaries if missing, and fail (never skip) when the cluster
                               cannot be started. CI sets this.
  JOBWORKER_BUILD_K8S=1        build the binaries with hack/build-k8s.sh if missing (else: skip).
  JOBWORKER_K8S_CACHE          binary cache root (default ~/.cache/jobworker-k8s).
kubectl is /usr/bin/kubectl (else the first kubectl on PATH).
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
E2E_DIR = Path(__file__).resolve().parent
KUBECTL = "/usr/bin/kubectl" if os.access("/usr/bin/kubectl", os.X_OK) else (shutil.which("kubectl") or "kubectl")


def _load_cluster_module() -> ModuleType:
    name = "jobworker_hack_cluster"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "hack" / "cluster.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


cluster_lib = _load_cluster_module()


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)
    # The README-path test runs `make cluster-up` with its own real node; only one real node fits on a
    # host, so it runs before any test that starts the session's node_cluster (which lives to the end).
    items.sort(key=lambda item: 0 if item.get_closest_marker("readme_path") else 1)


class KubectlError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return (
            f"kubectl {' '.join(map(str, self.cmd[1:]))} exited with {self.returncode}\n"
            f"stdout: {self.stdout}\nstderr: {self.stderr}"
        )


class Kubectl(Protocol):
    def __call__(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120,
        kubeconfig: Path | str | None = None,
    ) -> subprocess.CompletedProcess[str]: ...


def run_kubectl(
    kubeconfig: Path | str,
    args: Sequence[str],
    *,
    check: bool = True,
    input: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    cmd = [KUBECTL, f"--kubeconfig={kubeconfig}", *args]
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    if check and proc.returncode != 0:
        raise KubectlError(proc.returncode, cmd, proc.stdout, proc.stderr)
    return proc


@pytest.fixture(scope="session")
def k8s_bin_dir() -> Path:
    """Directory with etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok and helm."""
    require = _flag("JOBWORKER_REQUIRE_CLUSTER")
    bin_dir: Path = cluster_lib.default_bin_dir()
    missing: list[str] = cluster_lib.missing_binaries(bin_dir)
    if not missing:
        return bin_dir
    if require or _flag("JOBWORKER_BUILD_K8S"):
        try:
            bin_dir = cluster_lib.build_binaries()
        except (cluster_lib.ClusterError, OSError, subprocess.TimeoutExpired) as exc:
            pytest.fail(f"hack/build-k8s.sh could not build the control-plane binaries: {exc}", pytrace=False)
        missing = cluster_lib.missing_binaries(bin_dir)
        if missing:
            pytest.fail(f"hack/build-k8s.sh finished but {', '.join(missing)} missing in {bin_dir}", pytrace=False)
        return bin_dir
    pytest.skip(
        f"control-plane binaries missing in {bin_dir} ({', '.join(missing)}): run hack/build-k8s.sh "
        "(cold build ~20 min) or set JOBWORKER_BUILD_K8S=1 / JOBWORKER_REQUIRE_CLUSTER=1"
    )


@pytest.fixture(scope="session")
def helm_bin(k8s_bin_dir: Path) -> Path:
    """Path of the helm 3 binary built by hack/build-k8s.sh."""
    return k8s_bin_dir / "helm"


@pytest.fixture(scope="session")
def cluster(k8s_bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A running hack/cluster.py LocalCluster (``.kubeconfig``, ``.server``, ``.api_get()``...)."""
    if shutil.which(KUBECTL) is None:
        pytest.fail("kubectl not found (expected /usr/bin/kubectl)", pytrace=False)
    workdir = tmp_path_factory.mktemp("k8s")
    local = cluster_lib.LocalCluster(workdir, k8s_bin_dir)
    error: str | None = None
    try:
        local.start()
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    if error is not None:
        # Whether or not JOBWORKER_REQUIRE_CLUSTER is set: the binaries are there, so this is a failure.
        pytest.fail(f"the local control plane did not start (logs in {workdir / 'logs'}): {error}", pytrace=False)
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def kubectl(cluster: Any) -> Kubectl:
    """``kubectl(*args, check=True, input=None, timeout=120, kubeconfig=None) -> CompletedProcess[str]``

    Runs /usr/bin/kubectl against the local cluster as cluster admin (or with ``kubeconfig``).
    With ``check=True`` a non-zero exit raises KubectlError (a CalledProcessError showing stderr).
    """

    def _kubectl(
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120,
        kubeconfig: Path | str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return run_kubectl(kubeconfig or cluster.kubeconfig, args, check=check, input=input, timeout=timeout)

    return _kubectl


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace (with its default ServiceAccount in place), deleted after the test."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"e2e-{base}-{secrets.token_hex(3)}"
    kubectl("create", "namespace", name)
    try:
        # Pods are rejected until the controller-manager has created the default ServiceAccount.
        kubectl("wait", "--for=create", "serviceaccount/default", "-n", name, "--timeout=60s")
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


# The operator fixtures live in one place for the whole directory: imported into each test module
# instead, every module would get its own session-scoped operator, and two operators would fight.
from node_fixtures import (  # noqa: E402
    node_cluster,
    node_images,
    node_kubectl,
    node_operator,
    node_pg,
)
from operator_fixtures import (  # noqa: E402
    jwp_crd,
    operator,
    operator_identity,
    operator_kubeconfig,
    pg_server,
    pool_database,
)

__all__ = [
    "jwp_crd",
    "node_cluster",
    "node_images",
    "node_kubectl",
    "node_operator",
    "node_pg",
    "operator",
    "operator_identity",
    "operator_kubeconfig",
    "pg_server",
    "pool_database",
]
