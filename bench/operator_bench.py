"""`make bench-operator`: the operator at scale, 100 JobWorkerPools on the local control plane.

    .venv/bin/python bench/operator_bench.py [--pools 100] [--changes 20] [--quick]

Measures, on hack/cluster.py's LocalCluster (etcd, kube-apiserver, controller-manager, scheduler, kwok):
- cold start: 100 pools exist, then the operator starts; seconds until every pool is Ready;
- spec change -> Deployment updated: patch one pool's image, time until its Deployment carries it
  (one pool at a time, ``--changes`` samples, p50/p95);
- the operator's peak RSS (VmHWM) over the whole run.
Skips with a message (exit 0) when the control-plane binaries (hack/build-k8s.sh) or the operator
package are missing. Results: bench/results/operator.{jsonl,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h

from jobworker.devdb import free_port

RESULTS = h.BENCH / "results"
NAMESPACE = "bench"
IMAGE_V1 = "registry.example/bench-app:1.0"
KUBECTL = "/usr/bin/kubectl" if os.access("/usr/bin/kubectl", os.X_OK) else "kubectl"


def load_cluster_module() -> Any:
    spec = importlib.util.spec_from_file_location("jobworker_hack_cluster", h.ROOT / "hack" / "cluster.py")
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules["jobworker_hack_cluster"] = module
    spec.loader.exec_module(module)
    return module


def why_skip() -> str | None:
    if not (h.ROOT / "hack" / "cluster.py").exists():
        return "hack/cluster.py (LocalCluster) is not in this checkout"
    if importlib.util.find_spec("jobworker_operator.__main__") is None:
        return "the operator package (operator/jobworker_operator) is not installed in .venv"
    cluster = load_cluster_module()
    missing = cluster.missing_binaries(cluster.default_bin_dir())
    if missing:
        return (
            f"control-plane binaries missing in {cluster.default_bin_dir()}: {', '.join(missing)} (hack/build-k8s.sh)"
        )
    if not os.access(KUBECTL, os.X_OK) and subprocess.run(["which", KUBECTL], capture_output=True).returncode:
        return "kubectl is not installed"
    return None


def kubectl(kubeconfig: Path, *args: str, input: str | None = None) -> str:
    out = subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), *args], input=input, capture_output=True, text=True, timeout=300
    )
    if out.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {out.stderr}")
    return out.stdout


def pool(name: str, image: str = IMAGE_V1) -> dict[str, Any]:
    return {
        "apiVersion": "jobworker.dev/v1alpha1",
        "kind": "JobWorkerPool",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "image": image,
            "tasks": "app.tasks",
            "provider": {"type": "graphile", "graphile": {"databaseUrlSecretRef": {"name": "db"}}},
            "migration": {"backoffLimit": 0},
            "workers": {"replicas": 1, "concurrency": 10},
        },
    }


def ready_count(kubeconfig: Path) -> int:
    items = json.loads(kubectl(kubeconfig, "get", "jwp", "-n", NAMESPACE, "-o", "json"))["items"]
    n = 0
    for item in items:
        for cond in (item.get("status") or {}).get("conditions") or []:
            if cond["type"] == "Ready" and cond["status"] == "True":
                n += 1
    return n


async def change_latencies(kubeconfig: Path, names: list[str]) -> list[float]:
    from kubernetes_asyncio import client, config

    await config.load_kube_config(config_file=str(kubeconfig))
    out = []
    async with client.ApiClient() as api:
        custom, apps = client.CustomObjectsApi(api), client.AppsV1Api(api)
        for i, name in enumerate(names):
            image = f"registry.example/bench-app:2.{i}"
            t0 = time.perf_counter()
            await custom.patch_namespaced_custom_object(
                "jobworker.dev",
                "v1alpha1",
                NAMESPACE,
                "jobworkerpools",
                name,
                [{"op": "replace", "path": "/spec/image", "value": image}],
            )
            while True:
                deps = await apps.list_namespaced_deployment(NAMESPACE, label_selector=f"jobworker.dev/pool={name}")
                images = [c.image for d in deps.items for c in d.spec.template.spec.containers]
                if images and all(im == image for im in images):
                    break
                if time.perf_counter() - t0 > 120:
                    raise RuntimeError(f"pool {name}: Deployment not updated within 120 s")
                await asyncio.sleep(0.02)
            out.append(time.perf_counter() - t0)
    return out


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pools", type=int, default=100)
    p.add_argument("--changes", type=int, default=20)
    p.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1")
    args = p.parse_args()
    if args.quick:
        args.pools, args.changes = 10, 5
    reason = why_skip()
    if reason:
        print(f"bench-operator: SKIPPED - {reason}")
        return
    cluster_mod = load_cluster_module()
    work = h.WORK / "k8s"
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"pools": args.pools}
    with h.server() as srv, cluster_mod.LocalCluster(work / "cluster") as cluster:
        kc = cluster.kubeconfig
        kubectl(kc, "apply", "--server-side", "--force-conflicts", "-f", str(h.ROOT / "crds"))
        kubectl(kc, "wait", "--for=condition=Established", "crd/jobworkerpools.jobworker.dev", "--timeout=60s")
        kubectl(kc, "create", "namespace", NAMESPACE)
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db", "namespace": NAMESPACE},
            "data": {"url": base64.b64encode(srv.url_for("postgres").encode()).decode()},
        }
        names = [f"pool-{i:03d}" for i in range(args.pools)]
        items = [secret, *(pool(n) for n in names)]
        kubectl(kc, "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        port, metrics = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "JOBWORKER_"))}
        env["KUBECONFIG"] = str(kc)
        log = (work / "operator.log").open("wb")
        cmd = [str(h.MAIN_PY), "-m", "jobworker_operator", "--all-namespaces", "--bind-address", "127.0.0.1"]
        cmd += ["--liveness-port", str(port), "--metrics-port", str(metrics)]
        t0 = time.monotonic()
        op = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=h.ROOT)
        try:
            ready, last_log = 0, 0.0
            while ready < args.pools:
                if op.poll() is not None:
                    raise RuntimeError(f"the operator exited with {op.returncode}; see {work / 'operator.log'}")
                if time.monotonic() - t0 > 900:
                    raise RuntimeError(f"only {ready}/{args.pools} pools Ready after 900 s")
                ready = ready_count(kc)
                if time.monotonic() - last_log > 10:
                    h.log(f"{ready}/{args.pools} pools Ready after {time.monotonic() - t0:.0f}s")
                    last_log = time.monotonic()
                time.sleep(0.25)
            result["cold_start_all_ready_s"] = time.monotonic() - t0
            result["healthz"] = healthy(port)
            h.log(f"all {args.pools} pools Ready in {result['cold_start_all_ready_s']:.1f}s")
            lat = asyncio.run(change_latencies(kc, names[: args.changes]))
            result["spec_change_p50_s"] = h.percentile(lat, 0.5)
            result["spec_change_p95_s"] = h.percentile(lat, 0.95)
            result["spec_change_samples"] = lat
            result["operator_peak_rss_mib"] = (h.rss_kb(op.pid, "VmHWM") or 0) / 1024
            result["operator_rss_mib"] = (h.rss_kb(op.pid) or 0) / 1024
        finally:
            if op.poll() is None:
                os.kill(op.pid, signal.SIGTERM)  # only the operator this script started
                try:
                    op.wait(30)
                except subprocess.TimeoutExpired:
                    os.kill(op.pid, signal.SIGKILL)
                    op.wait(10)
            log.close()
    write(result, quick=args.quick)


def write(result: dict[str, Any], *, quick: bool) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"kind": "meta", "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": h.machine()}
    meta["quick"] = quick
    targets = [
        {
            "kind": "target",
            "target": "operator peak RSS, 100 pools",
            "measured": result.get("operator_peak_rss_mib"),
            "goal": "< 150 MiB",
            "met": (result.get("operator_peak_rss_mib") or 1e9) < 150,
        },
    ]
    name = "operator-quick" if quick else "operator"
    with (RESULTS / f"{name}.jsonl").open("w") as f:
        for row in (meta, {"kind": "result", **result}, *targets):
            f.write(json.dumps(row) + "\n")
    md = [
        f"# Operator at scale - {meta['date']}",
        "",
        f"{result['pools']} JobWorkerPools, LocalCluster (kwok node), embedded PostgreSQL.",
        "",
        "| metric | value |",
        "|---|---:|",
        f"| cold start to all Ready | {result['cold_start_all_ready_s']:.1f} s |",
        f"| spec change -> Deployment updated, p50 | {result['spec_change_p50_s'] * 1000:.0f} ms |",
        f"| spec change -> Deployment updated, p95 | {result['spec_change_p95_s'] * 1000:.0f} ms |",
        f"| operator peak RSS | {result['operator_peak_rss_mib']:.0f} MiB (goal < 150) |",
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
