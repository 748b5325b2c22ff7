from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobworker_operator import model
from jobworker_operator.model import Pool
from tests.operator_unit.helpers import body, pool

CRD = Path(__file__).parents[2] / "crds" / "jobworkerpools.yaml"


def crd_spec_schema() -> dict[str, Any]:
    doc = yaml.safe_load(CRD.read_text())
    schema: dict[str, Any] = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def apply_schema_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Structural defaulting as the API server does it: fill absent properties that have a default, at every
    depth, inside array items too (schedules[] entries are where a stray default would override define_job).

    Returns a new value and leaves ``value`` alone: defaulting the test's own input in place would make both
    sides of a comparison the defaulted one."""
    if schema.get("type") == "array" and isinstance(value, list):
        return [apply_schema_defaults(schema.get("items", {}), item) for item in value]
    if schema.get("type") != "object" or not isinstance(value, dict):
        return copy.deepcopy(value)
    result = {key: copy.deepcopy(item) for key, item in value.items()}
    for key, sub in (schema.get("properties") or {}).items():
        if key not in result and "default" in sub:
            result[key] = copy.deepcopy(sub["default"])
        if key in result:
            result[key] = apply_schema_defaults(sub, result[key])
    return result


class TestDefaults:
    def test_minimal_pool(self) -> None:
        p = pool()
        assert p.provider == "graphile"
        assert p.schema == "graphile_worker"
        assert p.workers.replicas == 1
        assert p.workers.concurrency is None  # the worker's own default, or JOBS_CONCURRENCY
        assert p.workers.autoscaling is None
        assert p.scheduler.enabled is True
        assert p.migration.enabled is True
        assert p.sweep.schedule == "* * * * *"
        assert p.cleanup.operations == ("gc-task-identifiers", "gc-job-queues")
        assert p.metrics.port == 9464

    def test_crd_defaults_equal_model_defaults(self) -> None:
        """Defaults are written once in model.py; the CRD must agree field by field."""
        minimal = body(
            workers={"autoscaling": {"maxReplicas": 5}, "env": [{"name": "X", "value": "1"}]},
            scheduler={"schedules": [{"id": "a", "task": "t", "cron": "* * * * *"}]},
        )
        defaulted = body()
        defaulted["spec"] = apply_schema_defaults(crd_spec_schema(), minimal["spec"])
        assert Pool.from_body(defaulted) == Pool.from_body(minimal)

    def test_every_crd_default_is_in_its_description(self) -> None:
        def walk(schema: dict[str, Any], path: str) -> list[str]:
            bad = []
            for key, sub in (schema.get("properties") or {}).items():
                # `default: {}` on an object only enables defaulting of its fields, which state theirs.
                if sub.get("default", {}) != {} and "Default" not in sub.get("description", ""):
                    bad.append(f"{path}.{key}")
                bad += walk(sub.get("items", sub), f"{path}.{key}")
            return bad

        assert walk(crd_spec_schema(), "spec") == []

    def test_autoscaling_defaults(self) -> None:
        auto = pool(workers={"autoscaling": {"maxReplicas": 4}}).workers.autoscaling
        assert auto == model.Autoscaling(
            max_replicas=4, min_replicas=1, target_jobs_per_replica=10, scale_down_delay_seconds=300
        )


class TestMigrationDigest:
    def test_changes_with_image_and_schema(self) -> None:
        a = pool()
        b = pool(image="registry.example/app:2.0")
        c = pool(provider={"type": "graphile", "graphile": {"databaseUrlSecretRef": {"name": "db"}, "schema": "other"}})
        assert len({a.migration_digest, b.migration_digest, c.migration_digest}) == 3

    @pytest.mark.parametrize("replicas", [1, 5])
    def test_ignores_unrelated_fields(self, replicas: int) -> None:
        assert pool(workers={"replicas": replicas}).migration_digest == pool().migration_digest

    def test_pointing_at_another_database_needs_a_new_migration(self) -> None:
        other_secret = {"type": "graphile", "graphile": {"databaseUrlSecretRef": {"name": "db-eu"}}}
        other_key = {"type": "graphile", "graphile": {"databaseUrlSecretRef": {"name": "db", "key": "eu"}}}
        digests = {pool().migration_digest, pool(provider=other_secret).migration_digest}
        digests.add(pool(provider=other_key).migration_digest)
        assert len(digests) == 3


class TestCrdReference:
    def test_docs_are_fresh(self) -> None:
        import importlib.util

        path = Path(__file__).parents[2] / "scripts" / "gen_crd_reference.py"
        spec = importlib.util.spec_from_file_location("gen_crd_reference", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.main(["--check"]) == 0, "run: python scripts/gen_crd_reference.py"


class TestDurations:
    """CRD times are duration strings, as in the CLI; the integer *Seconds fields are still read."""

    @pytest.mark.parametrize(
        ("spec", "seconds"),
        [
            ({}, 30),
            ({"workers": {"gracefulShutdown": "2m"}}, 120),
            ({"workers": {"gracefulShutdown": "1500ms"}}, 2),  # whole seconds for Kubernetes, rounded up
            ({"workers": {"gracefulShutdownSeconds": 45}}, 45),
            ({"workers": {"gracefulShutdown": "99999999999d"}}, 100 * 365 * 86400),
        ],
    )
    def test_graceful_shutdown(self, spec: dict[str, Any], seconds: int) -> None:
        assert pool(**spec).workers.graceful_shutdown_seconds == seconds

    def test_every_deprecated_field_is_honoured(self) -> None:
        old = pool(
            workers={"gracefulShutdownSeconds": 7, "autoscaling": {"maxReplicas": 2, "scaleDownDelaySeconds": 8}},
            migration={"activeDeadlineSeconds": 9, "drainTimeoutSeconds": 10},
        )
        new = pool(
            workers={"gracefulShutdown": "7s", "autoscaling": {"maxReplicas": 2, "scaleDownDelay": "8s"}},
            migration={"activeDeadline": "9s", "drainTimeout": "10s"},
        )
        assert old == new
        assert new.workers.autoscaling is not None and new.workers.autoscaling.scale_down_delay_seconds == 8
        assert (new.migration.active_deadline_seconds, new.migration.drain_timeout_seconds) == (9, 10)

    def test_the_defaults_are_the_old_ones(self) -> None:
        p = pool(workers={"autoscaling": {"maxReplicas": 2}})
        assert p.workers.autoscaling is not None and p.workers.autoscaling.scale_down_delay_seconds == 300
        assert (p.migration.active_deadline_seconds, p.migration.drain_timeout_seconds) == (600, 300)

    def test_cleanup_tasks_is_the_deprecated_name_of_operations(self) -> None:
        ops = ["delete-permanently-failed-jobs"]
        assert pool(cleanup={"tasks": ops}).cleanup == pool(cleanup={"operations": ops}).cleanup
        assert pool(cleanup={"operations": ops}).cleanup.operations == tuple(ops)
