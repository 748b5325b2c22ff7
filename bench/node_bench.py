"""`make bench-node`: a JobWorkerPool on the real local node (hack/node.py), timed as a user feels it.

    .venv/bin/python bench/node_bench.py [--repeats 3]

Starts hack/cluster.py's LocalCluster with a real kubelet node (root, Debian's containerd/runc/CNI plugins),
imports the images built by hack/images.py, a PostgreSQL on the node bridge, and the operator in-cluster
from the chart. Then, per repeat, in a fresh namespace and database:
- apply -> first job: from `kubectl apply` of a pool (migration Job, then worker pods) until a job enqueued
  as soon as the schema exists has been processed by a worker pod;
- spec change -> rolled out: from patching the pool's worker env until the worker Deployment's new pods
  are all Ready and the old ones gone.
Figures are printed and written to bench/results/node.{jsonl,md}; nothing is asserted.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
KUBECTL = "/usr/bin/kubectl" if os.access("/usr/bin/kubectl", os.X_OK) else "kubectl"


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _kubectl(kubeconfig: Path, *args: str, input: str | None = None, timeout: float = 300) -> str:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    proc = subprocess.run(
        [KUBECTL, f"--kubeconfig={kubeconfig}", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def _wait(what: str, check: Any, timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def _node_gateway() -> str:
    return str(sys.modules["jobworker_hack_node"].GATEWAY)


def _schema_ready(url: str) -> bool:
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=2) as conn:
            row = conn.execute("select to_regclass('graphile_worker._private_jobs') is not null").fetchone()
            return bool(row and row[0])
    except psycopg.Error:
        return False


def _jobs_left(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("select count(*) from graphile_worker._private_jobs").fetchone()
        return int(row[0]) if row else 0


def _rolled_out(kubeconfig: Path, namespace: str, name: str) -> bool:
    deployment = json.loads(_kubectl(kubeconfig, "get", "deployment", name, "-n", namespace, "-o", "json"))
    status, spec = deployment.get("status", {}), deployment["spec"]
    return (
        status.get("observedGeneration", 0) >= deployment["metadata"]["generation"]
        and status.get("updatedReplicas", 0) == spec["replicas"]
        and status.get("readyReplicas", 0) == spec["replicas"]
        and status.get("replicas", 0) == spec["replicas"]
    )


def run(repeats: int) -> list[dict[str, Any]]:
    cluster_lib = _load("jobworker_hack_cluster", ROOT / "hack" / "cluster.py")
    node_lib = cluster_lib.load_node_module()
    missing = node_lib.missing_host_tools()
    if missing:
        print(f"skipped: the real node needs {', '.join(missing)}")
        return []
    bin_dir = cluster_lib.build_binaries(show_progress=True)
    workdir = Path(tempfile.mkdtemp(prefix="jwbench-", dir="/tmp"))
    cluster = cluster_lib.LocalCluster(workdir, bin_dir, real_node=True, taint_node=False, kwok_node=False)
    from jobworker.devdb import EphemeralPostgres

    results: list[dict[str, Any]] = []
    cluster.start()
    pg = None
    try:
        cluster_lib.import_images(cluster)
        pg = EphemeralPostgres(
            workdir / "postgres", listen=("127.0.0.1", node_lib.GATEWAY), trust_networks=(node_lib.NODE_SUBNET,)
        ).start()
        kc = cluster.kubeconfig
        _kubectl(kc, "apply", "--server-side", "-f", str(ROOT / "crds"))
        _kubectl(kc, "wait", "--for=condition=Established", "crd/jobworkerpools.jobworker.dev", "--timeout=60s")
        subprocess.run(
            [
                str(bin_dir / "helm"),
                "--kubeconfig",
                str(kc),
                "install",
                "jobworker",
                str(ROOT / "charts" / "jobworker"),
                "-n",
                "jobworker-system",
                "--create-namespace",
                "--skip-crds",
                "--set",
                "image.repository=jobworker-operator",
                "--set",
                "image.tag=dev",
                "--set",
                "image.pullPolicy=Never",
                "--wait",
                "--timeout",
                "300s",
            ],
            check=True,
            capture_output=True,
            timeout=400,
        )
        for i in range(repeats):
            results.append(_one(kc, pg, i))
            print(json.dumps(results[-1]), flush=True)
    finally:
        if pg is not None:
            pg.stop()
        cluster.stop()
    return results


def _one(kubeconfig: Path, pg: Any, i: int) -> dict[str, Any]:
    namespace = f"bench-{i}-{os.getpid()}"
    database = f"bench_{i}_{os.getpid()}"
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute(f'create database "{database}"')  # type: ignore[arg-type]
    host_url = pg.url_for(database)
    pod_url = host_url.replace("@127.0.0.1:", f"@{_node_gateway()}:")
    _kubectl(kubeconfig, "create", "namespace", namespace)
    _kubectl(kubeconfig, "wait", "--for=create", "serviceaccount/default", "-n", namespace, "--timeout=60s")
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": namespace},
        "data": {"url": base64.b64encode(pod_url.encode()).decode()},
    }
    _kubectl(kubeconfig, "apply", "-f", "-", input=json.dumps(secret))
    pool = {
        "apiVersion": "jobworker.dev/v1alpha1",
        "kind": "JobWorkerPool",
        "metadata": {"name": "app", "namespace": namespace},
        "spec": {
            "image": "jobworker-example:dev",
            "imagePullPolicy": "Never",
            "tasks": "examples.tasks",
            "provider": {"type": "graphile", "graphile": {"databaseUrlSecretRef": {"name": "db"}}},
            "workers": {"replicas": 1, "pollInterval": "1s"},
            "scheduler": {"enabled": False},
        },
    }
    t0 = time.monotonic()
    _kubectl(kubeconfig, "apply", "-f", "-", input=json.dumps(pool))
    _wait("the migration to create the schema", lambda: _schema_ready(host_url), 600)
    t_schema = time.monotonic() - t0
    subprocess.run(
        [sys.executable, "-m", "jobworker", "add", "send_email", "--payload", '{"to": "a@b.c", "subject": "x"}'],
        env={**os.environ, "DATABASE_URL": host_url},
        check=True,
        capture_output=True,
        timeout=60,
    )
    _wait("the first job to be processed", lambda: _jobs_left(host_url) == 0, 600)
    t_first = time.monotonic() - t0

    _wait("the pool's worker Deployment", lambda: _rolled_out(kubeconfig, namespace, "app-worker"), 300)
    t1 = time.monotonic()
    patch = {"spec": {"workers": {"env": [{"name": "BENCH_REVISION", "value": str(time.time())}]}}}
    _kubectl(kubeconfig, "patch", "jwp", "app", "-n", namespace, "--type=merge", "-p", json.dumps(patch))

    def rolled() -> bool:
        deployment = json.loads(_kubectl(kubeconfig, "get", "deployment", "app-worker", "-n", namespace, "-o", "json"))
        env = deployment["spec"]["template"]["spec"]["containers"][0].get("env", [])
        return any(e["name"] == "BENCH_REVISION" for e in env) and _rolled_out(kubeconfig, namespace, "app-worker")

    _wait("the spec change to roll out", rolled, 600)
    t_rollout = time.monotonic() - t1
    _kubectl(kubeconfig, "delete", "namespace", namespace, "--wait=false")
    return {
        "repeat": i,
        "apply_to_schema_s": round(t_schema, 2),
        "apply_to_first_job_s": round(t_first, 2),
        "spec_change_rollout_s": round(t_rollout, 2),
    }


def write(results: list[dict[str, Any]]) -> None:
    if not results:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    with (RESULTS / "node.jsonl").open("w") as handle:
        for row in results:
            handle.write(json.dumps({"at": stamp, **row}) + "\n")
    lines = [
        f"# Real node: a pool from kubectl apply to its first job, and a rollout ({stamp})",
        "",
        "| measure | median (s) | min (s) | max (s) | samples |",
        "|---|---|---|---|---|",
    ]
    for key, label in (
        ("apply_to_schema_s", "kubectl apply -> schema migrated by the migration Job's pod"),
        ("apply_to_first_job_s", "kubectl apply -> first job processed by a worker pod"),
        ("spec_change_rollout_s", "spec change (workers.env) -> new worker pods Ready, old gone"),
    ):
        values = [float(r[key]) for r in results]
        lines.append(
            f"| {label} | {statistics.median(values):.1f} | {min(values):.1f} | {max(values):.1f} | {len(values)} |"
        )
    (RESULTS / "node.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    write(run(args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
