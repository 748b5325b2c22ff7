"""render/migration_job.py: one class per render function, each covering the defaults first."""

from __future__ import annotations

from jobworker_operator import names, render
from tests.operator_unit.helpers import assert_owned, assert_restricted, container, env_names, pod_spec, pool


class TestRenderMigrationJob:
    def test_defaults(self) -> None:
        p = pool()
        job = render.render_migration_job(p)
        assert job["metadata"]["name"] == f"pool-migrate-{p.migration_digest}"
        assert_owned(job, "migration")
        assert_restricted(job)
        assert job["spec"]["backoffLimit"] == 2
        assert job["spec"]["activeDeadlineSeconds"] == 600
        c = container(job)
        assert c["args"] == ["migrate"]
        assert c["image"] == "registry.example/app:1.0"
        env = env_names(c)
        assert env["DATABASE_URL"] == {
            "name": "DATABASE_URL",
            "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}},
        }
        assert env["JOBWORKER_SCHEMA"]["value"] == "graphile_worker"
        assert pod_spec(job)["restartPolicy"] == "Never"

    def test_exit_codes_3_and_4_fail_the_job_at_once(self) -> None:
        (rule,) = render.render_migration_job(pool())["spec"]["podFailurePolicy"]["rules"]
        assert rule["action"] == "FailJob"
        assert rule["onExitCodes"] == {"containerName": "migrate", "operator": "In", "values": [3, 4, 5]}

    def test_breaking(self) -> None:
        job = render.render_migration_job(pool(), breaking=True)
        assert job["metadata"]["name"].endswith("-b")
        assert container(job)["args"] == ["migrate", "--allow-breaking"]

    def test_pod_template_labels_reach_the_pod_but_not_override_ours(self) -> None:
        job = render.render_migration_job(
            pool(podTemplate={"labels": {"jobworker.dev/test-fail": "true", "app.kubernetes.io/component": "evil"}})
        )
        labels = job["spec"]["template"]["metadata"]["labels"]
        assert labels["jobworker.dev/test-fail"] == "true"
        assert labels["app.kubernetes.io/component"] == "migration"

    def test_longest_name_fits_63(self) -> None:
        p = pool()
        long = names.migrate_job("x" * names.MAX_POOL_NAME, p.migration_digest, breaking=True)
        assert len(long) <= 63
