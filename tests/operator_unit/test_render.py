"""render.children: the children each provider and option gets, in apply order."""

from __future__ import annotations

import json
import re
from typing import Any

from jobworker_operator import plan, render
from tests.operator_unit.helpers import QSTASH, pool

# Every spelling libpq accepts for a connection string that could carry a password.
CONNECTION_STRING = re.compile(r"postgres(ql)?://|\b(password|host|user|dbname)\s*=", re.IGNORECASE)
WORKER_URL = {
    "type": "graphile",
    "graphile": {"databaseUrlSecretRef": {"name": "db"}, "workerDatabaseUrlSecretRef": {"name": "wdb"}},
}


def env_vars(obj: Any) -> list[dict[str, Any]]:
    """Every container env entry anywhere in a rendered object."""
    if isinstance(obj, list):
        return [e for item in obj for e in env_vars(item)]
    if not isinstance(obj, dict):
        return []
    own = [e for e in obj.get("env", []) if isinstance(e, dict) and "name" in e]
    return own + [e for key, value in obj.items() if key != "env" for e in env_vars(value)]


class TestChildren:
    def test_graphile_defaults(self) -> None:
        p = pool()
        kinds = [(o["kind"], o["metadata"]["name"]) for o in render.children(p, plan.components(p), worker_replicas=1)]
        assert kinds == [
            ("ConfigMap", "pool-schedules"),
            ("Deployment", "pool-scheduler"),
            ("Deployment", "pool-worker"),
            ("CronJob", "pool-sweep"),
            ("CronJob", "pool-cleanup"),
            ("Service", "pool-metrics"),
        ]

    def test_qstash(self) -> None:
        p = pool(provider=QSTASH)
        kinds = [o["kind"] for o in render.children(p, plan.components(p), worker_replicas=2)]
        assert kinds == ["ConfigMap", "Job", "Deployment", "Service"]

    def test_service_monitor_opt_in(self) -> None:
        p = pool(metrics={"serviceMonitor": True})
        kinds = [o["kind"] for o in render.children(p, plan.components(p), worker_replicas=1)]
        assert "ServiceMonitor" in kinds

    def test_database_urls_only_ever_come_from_secrets(self) -> None:
        pools = [
            pool(dashboard={"enabled": True}, metrics={"serviceMonitor": True}),
            pool(provider=WORKER_URL, dashboard={"enabled": True}),
            pool(provider=QSTASH),
        ]
        url_vars = []
        for p in pools:
            children = [*render.children(p, plan.components(p), worker_replicas=1), render.render_migration_job(p)]
            match = CONNECTION_STRING.search(json.dumps(children))
            assert match is None, f"a connection string is inline in a rendered child: {match and match.group(0)!r}"
            url_vars += [e for e in env_vars(children) if e["name"].endswith("DATABASE_URL")]
        assert {e["name"] for e in url_vars} == {"DATABASE_URL", "WORKER_DATABASE_URL"}
        for var in url_vars:
            assert set(var) == {"name", "valueFrom"} and set(var["valueFrom"]) == {"secretKeyRef"}, var
