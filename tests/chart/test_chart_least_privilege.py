"""Least privilege in the chart (issue 11, item 3 and 5): a mode without any Secret access, optional
NetworkPolicies, and pod labels that can never override the selector. Needs helm (see helpers.find_helm)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chart.helpers import KUBE_VERSION, by_kind, render, require_helm, rules_as_set

kubernetes_validate = pytest.importorskip("kubernetes_validate")


@pytest.fixture(scope="module")
def helm() -> Path:
    return require_helm()


def rules(docs: list[dict[str, Any]]) -> set[tuple[str, str, frozenset[str]]]:
    out: set[tuple[str, str, frozenset[str]]] = set()
    for doc in by_kind(docs, "ClusterRole") + by_kind(docs, "Role"):
        out |= rules_as_set(doc.get("rules") or [])
    return out


def operator_args(docs: list[dict[str, Any]]) -> list[str]:
    (deployment,) = by_kind(docs, "Deployment")
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


@pytest.mark.parametrize("namespaces", [[], ["team-a", "team-b"]], ids=["cluster-wide", "per-namespace"])
def test_the_workers_mode_reads_no_secret(helm: Path, tmp_path: Path, namespaces: list[str]) -> None:
    docs = render(helm, {"queueStats": {"source": "workers"}, "watchNamespaces": namespaces}, tmp_path / "v.yaml")
    granted = rules(docs)
    assert not any(resource == "secrets" for _, resource, _ in granted), granted
    assert ("discovery.k8s.io", "endpointslices", frozenset({"list"})) in granted
    args = operator_args(docs)
    assert args[args.index("--queue-stats-from") + 1] == "workers"
    assert len(by_kind(docs, "Role")) == len(namespaces)


def test_the_default_mode_reads_secrets_for_queue_stats(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, {}, tmp_path / "v.yaml")
    assert ("", "secrets", frozenset({"get"})) in rules(docs)
    assert "--queue-stats-from" not in operator_args(docs)  # the operator's own default: database


@pytest.mark.parametrize("source", ["database", "workers"])
def test_network_policies_for_the_operator_and_each_watched_namespace(helm: Path, tmp_path: Path, source: str) -> None:
    values = {
        "watchNamespaces": ["team-a", "team-b"],
        "queueStats": {"source": source},
        "networkPolicy": {
            "enabled": True,
            "apiServerCIDRs": ["10.0.0.1/32"],
            "databaseCIDRs": ["10.1.0.0/16"],
            "metricsNamespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        },
    }
    docs = render(helm, values, tmp_path / "v.yaml")
    policies = by_kind(docs, "NetworkPolicy")
    assert sorted(p["metadata"]["namespace"] for p in policies) == ["jobworker-system", "team-a", "team-b"]
    for policy in policies:
        kubernetes_validate.validate(policy, KUBE_VERSION, strict=True)
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    operator = next(p for p in policies if p["metadata"]["namespace"] == "jobworker-system")
    egress_cidrs = {
        b["ipBlock"]["cidr"] for rule in operator["spec"]["egress"] for b in rule.get("to") or [] if "ipBlock" in b
    }
    assert "10.0.0.1/32" in egress_cidrs
    assert ("10.1.0.0/16" in egress_cidrs) == (source == "database")
    pools = next(p for p in policies if p["metadata"]["namespace"] == "team-a")
    assert (
        pools["spec"]["ingress"][0]["from"][0]["namespaceSelector"]
        == values["networkPolicy"]["metricsNamespaceSelector"]
    )
    assert {"key": "app.kubernetes.io/component", "operator": "NotIn", "values": ["receiver"]} in pools["spec"][
        "podSelector"
    ]["matchExpressions"]


def test_no_network_policy_by_default(helm: Path, tmp_path: Path) -> None:
    assert by_kind(render(helm, {}, tmp_path / "v.yaml"), "NetworkPolicy") == []


def test_pod_labels_never_override_the_selector(helm: Path, tmp_path: Path) -> None:
    values = {"podLabels": {"app.kubernetes.io/component": "mine", "app.kubernetes.io/name": "x", "team": "a"}}
    (deployment,) = by_kind(render(helm, values, tmp_path / "v.yaml"), "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert {k: labels[k] for k in selector} == selector
    assert labels["team"] == "a"
