"""spec.dashboard: a read-only dashboard Deployment and Service per pool, hardened like the workers."""

from __future__ import annotations

from jobworker import cli
from jobworker_operator import model, names, plan, render
from jobworker_operator.render import common
from tests.operator_unit.helpers import container, pool
from tests.operator_unit.test_model_defaults import crd_defaulted


def children_of(p: model.Pool) -> dict[tuple[str, str], dict[str, object]]:
    return {(c["kind"], c["metadata"]["name"]): c for c in render.children(p, plan.components(p), worker_replicas=1)}


class TestDashboard:
    def test_off_by_default(self) -> None:
        p = crd_defaulted()
        assert p.dashboard == model.Dashboard() and not p.dashboard.enabled
        assert names.DASHBOARD not in plan.components(p)
        assert ("Deployment", "pool-dashboard") not in children_of(p)

    def test_enabled_renders_a_read_only_deployment_and_service(self) -> None:
        p = crd_defaulted(dashboard={"enabled": True})
        kids = children_of(p)
        deployment, service = kids[("Deployment", "pool-dashboard")], kids[("Service", "pool-dashboard")]
        c = container(deployment)
        assert c["args"] == ["dashboard", "--host", "0.0.0.0", "--port", str(model.DASHBOARD_PORT)]
        assert "--allow-actions" not in c["args"]
        assert c["securityContext"] == common.container_security_context()
        pod = deployment["spec"]["template"]["spec"]  # type: ignore[index]
        assert pod["securityContext"] == common.pod_security_context(p)
        assert pod["automountServiceAccountToken"] is False
        assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}} in c["env"]
        assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]  # type: ignore[index]
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]  # type: ignore[index]
        # The args are ones the CLI accepts, and they leave actions off.
        parsed = cli.build_parser().parse_args(c["args"])
        assert parsed.allow_actions is False and parsed.port == model.DASHBOARD_PORT

    def test_read_only_url_and_hidden_payloads(self) -> None:
        p = pool(dashboard={"enabled": True, "hidePayloads": True, "databaseUrlSecretRef": {"name": "ro", "key": "u"}})
        c = container(render.render_dashboard_deployment(p))
        assert c["args"][-1] == "--hide-payloads"
        urls = [e for e in c["env"] if e["name"].endswith("DATABASE_URL")]
        assert urls == [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "ro", "key": "u"}}}]

    def test_not_for_qstash_pools(self) -> None:
        p = pool(
            provider={"type": "qstash", "qstash": {"secretRef": {"name": "q"}, "callbackUrl": "https://x/"}},
            dashboard={"enabled": True},
        )
        assert names.DASHBOARD not in plan.components(p)

    def test_longest_name_fits(self) -> None:
        assert len(names.dashboard("p" * names.MAX_POOL_NAME)) <= 63
