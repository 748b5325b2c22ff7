"""The ``jobworker migrate`` Job that gates every rollout of a graphile pool."""

from __future__ import annotations

from typing import Any

from jobworker_operator import names
from jobworker_operator.model import Pool
from jobworker_operator.render import common

CONTAINER = "migrate"
# contracts.md: migrate exits 3 when a breaking migration is pending while workers heartbeat, 4 when
# the database schema is newer than the image, 5 when it is older than jobworker can upgrade from
# (graphile-worker < 0.17). Retrying any of them is pointless, so a podFailurePolicy
# fails the Job at once, and the Job's condition message carries the exit code — the operator has no
# RBAC on pods, so this is how it learns the code.
EXIT_BREAKING_PENDING = 3
EXIT_SCHEMA_TOO_NEW = 4
EXIT_SCHEMA_TOO_OLD = 5


def render_migration_job(pool: Pool, *, breaking: bool = False) -> dict[str, Any]:
    digest = pool.migration_digest
    name = names.migrate_job(pool.name, digest, breaking=breaking)
    args = ["migrate", "--allow-breaking"] if breaking else ["migrate"]
    container = common.container(pool, CONTAINER, args, common.database_env(pool))
    spec = common.pod_spec(pool, [container], restartPolicy="Never")
    meta = common.metadata(pool, name, names.MIGRATION)
    meta["annotations"] = {names.ANNOTATION_MIGRATION_DIGEST: digest}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": pool.migration.backoff_limit,
            "activeDeadlineSeconds": pool.migration.active_deadline_seconds,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": CONTAINER,
                            "operator": "In",
                            "values": [EXIT_BREAKING_PENDING, EXIT_SCHEMA_TOO_NEW, EXIT_SCHEMA_TOO_OLD],
                        },
                    },
                ],
            },
            "template": common.pod_template(pool, names.MIGRATION, spec),
        },
    }
