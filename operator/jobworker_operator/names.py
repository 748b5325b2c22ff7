"""Every name the operator shares with the cluster: API group, labels, annotations, child names.

Kept in one place so the chart, the CRD and the tests can grep for them (see docs/contracts.md).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

GROUP = "jobworker.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "JobWorkerPool"
PLURAL = "jobworkerpools"

FIELD_MANAGER = "jobworker-operator"
PERSISTENCE_PREFIX = "jobworker.dev"

# Labels on every child (contracts.md "Kubernetes names").
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_POOL = f"{GROUP}/pool"
APP_NAME = "jobworker"
MANAGED_BY = "jobworker-operator"

# Annotations the operator writes.
ANNOTATION_SPEC_HASH = f"{GROUP}/spec-hash"
ANNOTATION_SCHEDULES_CHECKSUM = f"{GROUP}/schedules-checksum"
ANNOTATION_MIGRATION_DIGEST = f"{GROUP}/migration-digest"

# Components (value of app.kubernetes.io/component).
WORKER = "worker"
SCHEDULER = "scheduler"
MIGRATION = "migration"
RECEIVER = "receiver"
SWEEP = "sweep"
CLEANUP = "cleanup"
METRICS = "metrics"
DASHBOARD = "dashboard"

# Pool names are capped (CRD rule) so that the longest child name, a breaking migration Job,
# stays within the 63 characters a Job name may have (it becomes a pod label value).
MAX_POOL_NAME = 40
DIGEST_LENGTH = 10

# Mount point of the schedules ConfigMap in scheduler / schedule-sync pods.
SCHEDULES_DIR = "/etc/jobworker"
SCHEDULES_FILE = "schedules.yaml"


def digest(*parts: Any) -> str:
    """A short, stable hex digest of JSON-serialisable parts (dict key order does not matter)."""
    raw = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:DIGEST_LENGTH]


def worker_deployment(pool: str) -> str:
    return f"{pool}-worker"


def scheduler_deployment(pool: str) -> str:
    return f"{pool}-scheduler"


def schedules_configmap(pool: str) -> str:
    return f"{pool}-schedules"


def dashboard(pool: str) -> str:
    """The dashboard Deployment and its Service share this name."""
    return f"{pool}-dashboard"


def receiver(pool: str) -> str:
    """The QStash receiver Deployment and its Service share this name."""
    return f"{pool}-receiver"


def metrics_service(pool: str) -> str:
    return f"{pool}-metrics"


def sweep_cronjob(pool: str) -> str:
    return f"{pool}-sweep"


def cleanup_cronjob(pool: str) -> str:
    return f"{pool}-cleanup"


def migrate_job(pool: str, migration_digest: str, *, breaking: bool = False) -> str:
    """``<pool>-migrate-<digest>``; the ``--allow-breaking`` retry gets a ``-b`` suffix."""
    return f"{pool}-migrate-{migration_digest}" + ("-b" if breaking else "")


def schedule_sync_job(pool: str, sync_digest: str) -> str:
    return f"{pool}-sync-{sync_digest}"


def labels(pool: str, component: str) -> dict[str, str]:
    return {
        LABEL_NAME: APP_NAME,
        LABEL_INSTANCE: pool,
        LABEL_COMPONENT: component,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_POOL: pool,
    }


def selector_labels(pool: str, component: str) -> dict[str, str]:
    """The immutable subset used in Deployment selectors (never add user labels here)."""
    return {LABEL_NAME: APP_NAME, LABEL_INSTANCE: pool, LABEL_COMPONENT: component}


def selector_string(pool: str, component: str) -> str:
    return ",".join(f"{k}={v}" for k, v in selector_labels(pool, component).items())
