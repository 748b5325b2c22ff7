"""Fixtures for the real-node e2e suite (tests/e2e/test_real_node*.py): a second local control plane with
a real kubelet node (hack/node.py), the images built for real and imported into its containerd, a
PostgreSQL that pods reach on the node bridge, and the operator installed in-cluster by the chart.

Which suite uses which node:
  * kwok (``cluster``/``kubectl`` fixtures, the fake ``kwok-node-0``): CRD validation, RBAC, many pools,
    status and scale logic, the chart's rendering and install. No container runs there.
  * the real node (``node_cluster``/``node_kubectl``, node ``jobworker-node``): everything a container
    must do for real, the operator pod, migration, worker, scheduler and CronJob pods, probes, SIGTERM.

Only one real node can run on a host (kube-proxy owns the host's KUBE-* chains), so this suite and
`make cluster-up` never overlap: the README-path test (which runs `make cluster-up` itself) is ordered
before the first test that starts ``node_cluster`` (conftest.py).

Environment: JOBWORKER_REQUIRE_KUBELET=1 fails (never skips) when the node cannot start; CI sets it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from operator_fixtures import secret_manifest

REPO_ROOT = Path(__file__).resolve().parents[2]
KUBECTL = "/usr/bin/kubectl" if os.access("/usr/bin/kubectl", os.X_OK) else "kubectl"
NODE_APP_DIR = Path(__file__).resolve().parent / "node_app"
OPERATOR_NAMESPACE = "jobworker-system"
WORKER_IMAGE = "jobworker:dev"
OPERATOR_IMAGE = "jobworker-operator:dev"
APP_IMAGE = "jobworker-e2e-app:dev"
Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def cluster_lib() -> Any:
    """hack/cluster.py as tests/e2e/conftest.py loaded it. Never `from conftest import ...` here: the bare
    name is whichever non-package conftest.py pytest imported last (tests/unit/test_test_layout.py keeps
    tests/e2e the only such directory, but a plugin's or a stray one would still win)."""
    return sys.modules["jobworker_hack_cluster"]


def node_lib() -> Any:
    """hack/node.py, loaded by hack/cluster.py like the tests load that one."""
    return cluster_lib().load_node_module()


def _unavailable(reason: str) -> None:
    if _flag("JOBWORKER_REQUIRE_KUBELET"):
        pytest.fail(f"JOBWORKER_REQUIRE_KUBELET=1 but {reason}", pytrace=False)
    pytest.skip(reason)


# ----------------------------------------------------------------------------------------- the cluster


@pytest.fixture(scope="session")
def node_cluster(k8s_bin_dir: Path) -> Iterator[Any]:
    """A control plane with the real node ``jobworker-node`` (tainted) beside ``kwok-node-0``."""
    missing = node_lib().missing_host_tools() + cluster_lib().missing_binaries(k8s_bin_dir, real_node=True)
    if missing:
        _unavailable(f"the real node needs {', '.join(missing)} (see .ci/run for the Debian packages)")
    # Short: containerd's socket lives here, and a unix socket path is limited to 107 bytes.
    workdir = Path(tempfile.mkdtemp(prefix="jwnode-", dir="/tmp"))
    local = cluster_lib().LocalCluster(workdir, k8s_bin_dir, real_node=True, taint_node=True, kwok_node=True)
    before = node_lib().host_snapshot()
    try:
        local.start()
    except Exception as exc:
        pytest.fail(f"the real-node cluster did not start (logs in {workdir / 'logs'}): {exc}", pytrace=False)
    try:
        yield local
    finally:
        local.stop()
        after = node_lib().host_snapshot()
        if after != before:
            pytest.fail(f"the real node left host changes behind: before {before}, after {after}", pytrace=False)


@pytest.fixture(scope="session")
def node_kubectl(node_cluster: Any) -> Kubectl:
    def _kubectl(
        *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        cmd = [KUBECTL, f"--kubeconfig={node_cluster.kubeconfig}", *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    return _kubectl


@dataclass(frozen=True)
class NodeImages:
    worker: str
    operator: str
    app: str


@pytest.fixture(scope="session")
def node_images(node_cluster: Any) -> NodeImages:
    """jobworker, jobworker-operator and the e2e app image, built for real and imported into the node."""
    archives = cluster_lib().build_all_images()
    images = cluster_lib().load_images_module()
    app = images.build(
        NODE_APP_DIR / "Dockerfile",
        NODE_APP_DIR,
        APP_IMAGE,
        {"BASE_IMAGE": cluster_lib().local_image_ref(WORKER_IMAGE)},
    )
    archives.append(app.archive)
    for archive in archives:
        node_cluster.node.import_image(archive)
    present = node_cluster.node.image_names()
    for name in (WORKER_IMAGE, OPERATOR_IMAGE, APP_IMAGE):
        assert any(p.endswith(f"/{name}") for p in present), f"{name} not in the node's containerd: {present}"
    return NodeImages(WORKER_IMAGE, OPERATOR_IMAGE, APP_IMAGE)


# ------------------------------------------------------------------------------------------ PostgreSQL


@dataclass
class NodePg:
    """Embedded PostgreSQL listening on 127.0.0.1 (the tests) and the node bridge (the pods)."""

    server: Any  # jobworker.devdb.EphemeralPostgres

    def create_database(self) -> str:
        """A fresh database; returns its URL as the host sees it."""
        import uuid

        name = f"n_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.server.url, autocommit=True) as conn:
            conn.execute(f'create database "{name}"')  # type: ignore[arg-type]
        url = str(self.server.url_for(name))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "create table public.e2e_runs (id bigserial primary key, job_id text, attempt int, tag text,"
                " pod text, outcome text, at timestamptz not null default now())"
            )
        return url

    def pod_url(self, host_url: str) -> str:
        return host_url.replace("@127.0.0.1:", f"@{node_lib().GATEWAY}:")


@pytest.fixture(scope="session")
def node_pg(node_cluster: Any) -> Iterator[NodePg]:
    sys.path.insert(0, str(REPO_ROOT)) if str(REPO_ROOT) not in sys.path else None
    from jobworker.devdb import EphemeralPostgres

    gateway = node_lib().GATEWAY
    server = EphemeralPostgres(listen=("127.0.0.1", gateway), trust_networks=(node_lib().NODE_SUBNET,)).start()
    try:
        yield NodePg(server)
    finally:
        server.cleanup()


def runs(url: str, tag: str | None = None) -> list[dict[str, Any]]:
    """Rows of public.e2e_runs (the e2e app's record of every run), oldest first."""
    query = "select job_id, attempt, tag, pod, outcome from public.e2e_runs"
    params: tuple[Any, ...] = ()
    if tag is not None:
        query += " where tag = %s"
        params = (tag,)
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(query + " order by id", params)  # type: ignore[arg-type]
        return list(cur.fetchall())


# -------------------------------------------------------------------------------------------- operator


def real_node_scheduling() -> dict[str, Any]:
    """nodeSelector + toleration that put a pod on the real node (and only there)."""
    key, value = node_lib().NODE_LABEL
    taint = node_lib().NODE_TAINT
    return {
        "nodeSelector": {key: value},
        "tolerations": [{"key": taint["key"], "operator": "Equal", "value": taint["value"], "effect": "NoSchedule"}],
    }


def helm(helm_bin: Path, kubeconfig: Path | str, *args: str, check: bool = True, timeout: float = 300) -> str:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    proc = subprocess.run(
        [str(helm_bin), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited with {proc.returncode}:\n{proc.stderr}\n{proc.stdout}")
    return proc.stdout + proc.stderr


@dataclass(frozen=True)
class InClusterOperator:
    release: str
    namespace: str

    @property
    def selector(self) -> str:
        return f"app.kubernetes.io/instance={self.release}"


@pytest.fixture(scope="session")
def node_operator(
    node_cluster: Any, node_kubectl: Kubectl, node_images: NodeImages, helm_bin: Path, tmp_path_factory: Any
) -> Iterator[InClusterOperator]:
    """The chart installed with the locally built operator image, its pod on the real node."""
    node_kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
    node_kubectl("wait", "--for=condition=Established", "crd/jobworkerpools.jobworker.dev", "--timeout=60s")
    repository, tag = node_images.operator.rsplit(":", 1)
    values = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        **real_node_scheduling(),
        # Quick status passes, so that the tests see reconciles within seconds.
        "extraArgs": ["--resync-seconds", "2"],
    }
    values_file = tmp_path_factory.mktemp("helm") / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    release = InClusterOperator("jobworker", OPERATOR_NAMESPACE)
    helm(
        helm_bin,
        node_cluster.kubeconfig,
        "install",
        release.release,
        str(REPO_ROOT / "charts" / "jobworker"),
        "--namespace",
        release.namespace,
        "--create-namespace",
        "--skip-crds",
        "-f",
        str(values_file),
        "--wait",
        "--timeout",
        "240s",
    )
    try:
        yield release
    finally:
        pods = node_kubectl("get", "pods", "-n", release.namespace, "-o", "name", check=False).stdout
        for pod in pods.split():
            log = node_kubectl("logs", pod, "-n", release.namespace, "--tail=200", check=False).stdout
            print(f"--- {pod} (tail)\n{log}")
        helm(helm_bin, node_cluster.kubeconfig, "uninstall", release.release, "-n", release.namespace, check=False)


__all__ = [
    "InClusterOperator",
    "NodeImages",
    "NodePg",
    "helm",
    "node_cluster",
    "node_images",
    "node_kubectl",
    "node_operator",
    "node_pg",
    "real_node_scheduling",
    "runs",
    "secret_manifest",
]
