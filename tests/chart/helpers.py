"""Shared helpers for the chart tests: locate helm, render the chart, parse docs/contracts.md."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "jobworker"
CONTRACTS = REPO_ROOT / "docs" / "contracts.md"
# `helm template` runs offline; pin the Kubernetes version it renders for (and that kubeVersion is checked
# against). Without it, a helm built with `go install` assumes v1.20 and the chart's kubeVersion rejects it.
KUBE_VERSION = "1.33.0"
MONITORING_API = "monitoring.coreos.com/v1"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _cache_candidates() -> Iterable[Path]:
    # The same cache hack/build-k8s.sh and tests/e2e/conftest.py use.
    root = Path(os.environ.get("JOBWORKER_K8S_CACHE") or Path.home() / ".cache" / "jobworker-k8s")
    version = os.environ.get("JOBWORKER_K8S_VERSION")
    if version:
        yield root / version / "bin" / "helm"
    yield from sorted(root.glob("v*/bin/helm"), reverse=True)


def find_helm() -> Path | None:
    """helm 3: $HELM_BIN, then the control-plane binary cache, then PATH."""
    explicit = os.environ.get("HELM_BIN")
    if explicit:
        return Path(explicit)
    for candidate in _cache_candidates():
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("helm")
    return Path(found) if found else None


def require_helm() -> Path:
    helm = find_helm()
    if helm is None:
        message = (
            "helm 3 not found (looked at $HELM_BIN, ~/.cache/jobworker-k8s/<version>/bin/helm from "
            "hack/build-k8s.sh, and PATH)"
        )
        if _flag("JOBWORKER_REQUIRE_CLUSTER"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message + "; run hack/build-k8s.sh or set HELM_BIN")
    return helm


def run_helm(helm: Path, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    proc = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited with {proc.returncode}:\n{proc.stderr}{proc.stdout}")
    return proc


def template_args(
    values: Mapping[str, Any] | None,
    values_file: Path,
    *,
    release: str = "jw",
    namespace: str = "jobworker-system",
    api_versions: Iterable[str] = (),
    extra: Iterable[str] = (),
) -> list[str]:
    values_file.write_text(yaml.safe_dump(dict(values or {})))
    args = ["template", release, str(CHART_DIR), "--namespace", namespace, "--kube-version", KUBE_VERSION]
    args += ["--values", str(values_file)]
    for api in api_versions:
        args += ["--api-versions", api]
    return [*args, *extra]


def render(
    helm: Path,
    values: Mapping[str, Any] | None,
    values_file: Path,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Render the chart and return its documents (empty ones dropped)."""
    out = run_helm(helm, *template_args(values, values_file, **kwargs)).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(docs: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def contract_rbac() -> tuple[set[tuple[str, str, frozenset[str]]], set[tuple[str, str, frozenset[str]]]]:
    """The RBAC tables of docs/contracts.md as {(apiGroup, resource, verbs)}: (namespaced, cluster-scoped)."""
    text = CONTRACTS.read_text()
    section = text.split("## RBAC the operator needs", 1)[1]
    namespaced: set[tuple[str, str, frozenset[str]]] = set()
    cluster: set[tuple[str, str, frozenset[str]]] = set()
    target = namespaced
    for line in section.splitlines():
        if line.startswith("## "):
            break
        if line.startswith("Cluster-scoped only"):
            target = cluster
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) != 3 or cells[0] in {"apiGroups"} or set(cells[0]) <= {"-"}:
            continue
        group = "" if cells[0] in {'""', "''"} else cells[0]
        verbs = frozenset(v.strip() for v in cells[2].split(","))
        for resource in re.split(r",\s*", cells[1]):
            target.add((group, resource, verbs))
    return namespaced, cluster


def rules_as_set(rules: Iterable[Mapping[str, Any]]) -> set[tuple[str, str, frozenset[str]]]:
    out: set[tuple[str, str, frozenset[str]]] = set()
    for rule in rules:
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs"), rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.add((group, resource, frozenset(rule["verbs"])))
    return out
