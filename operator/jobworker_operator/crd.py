"""The CRD's defaults, taken from ``model.py``, and the generator that writes them into the CRD.

``operator/crd/jobworkerpools.template.yaml`` holds the schema without any default the model owns: each
such field's description says ``$default`` where the value belongs. ``generate`` fills in
``CRD_DEFAULTS`` (schema ``default:`` plus description) and ``DESCRIBED_DEFAULTS`` (description only).
``scripts/gen_crd.py`` writes the result to crds/ and the chart; a test fails when they are stale.
"""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from typing import Any

import yaml

from jobworker.durations import format_duration
from jobworker_operator import model as m

PLACEHOLDER = "$default"


def _duration(seconds: float) -> str:
    return format_duration(timedelta(seconds=seconds))


# Schema `default:` values (the API server fills them in) by path under spec.
CRD_DEFAULTS: dict[str, Any] = {
    "imagePullPolicy": m.DEFAULT_IMAGE_PULL_POLICY,
    "provider.type": m.DEFAULT_PROVIDER,
    "provider.graphile.databaseUrlSecretRef.key": m.DEFAULT_SECRET_KEY,
    "provider.graphile.workerDatabaseUrlSecretRef.key": m.DEFAULT_SECRET_KEY,
    "provider.graphile.schema": m.DEFAULT_SCHEMA,
    "workers.resources": m.DEFAULT_RESOURCES,
    "workers.pollInterval": m.DEFAULT_POLL_INTERVAL,
    "workers.heartbeatInterval": m.DEFAULT_HEARTBEAT_INTERVAL,
    "workers.autoscaling.minReplicas": m.DEFAULT_MIN_REPLICAS,
    "workers.autoscaling.targetJobsPerReplica": m.DEFAULT_TARGET_JOBS_PER_REPLICA,
    "scheduler.enabled": m.DEFAULT_SCHEDULER_ENABLED,
    "scheduler.replicas": m.DEFAULT_SCHEDULER_REPLICAS,
    "migration.enabled": m.DEFAULT_MIGRATION_ENABLED,
    "migration.backoffLimit": m.DEFAULT_BACKOFF_LIMIT,
    "sweep.enabled": m.DEFAULT_SWEEP_ENABLED,
    "sweep.schedule": m.DEFAULT_SWEEP_SCHEDULE,
    "sweep.sweepThreshold": m.DEFAULT_SWEEP_THRESHOLD,
    "sweep.recoveryDelay": m.DEFAULT_RECOVERY_DELAY,
    "cleanup.enabled": m.DEFAULT_CLEANUP_ENABLED,
    "cleanup.schedule": m.DEFAULT_CLEANUP_SCHEDULE,
    "metrics.enabled": m.DEFAULT_METRICS_ENABLED,
    "metrics.port": m.DEFAULT_METRICS_PORT,
    "metrics.serviceMonitor": m.DEFAULT_SERVICE_MONITOR,
    "dashboard.enabled": m.DEFAULT_DASHBOARD_ENABLED,
    "dashboard.hidePayloads": m.DEFAULT_DASHBOARD_HIDE_PAYLOADS,
    "dashboard.databaseUrlSecretRef.key": m.DEFAULT_SECRET_KEY,
}
# Stated in the description only. Each replaces a deprecated field (an integer `*Seconds` field,
# model.DEPRECATED_SECONDS, or cleanup.tasks): a schema default would set the new field on every object, so
# a pool that still sets the old one would carry both. The model applies them when neither is set.
DESCRIBED_DEFAULTS: dict[str, Any] = {
    "workers.gracefulShutdown": _duration(m.DEFAULT_GRACEFUL_SHUTDOWN_SECONDS),
    "workers.autoscaling.scaleDownDelay": _duration(m.DEFAULT_SCALE_DOWN_DELAY_SECONDS),
    "migration.activeDeadline": _duration(m.DEFAULT_ACTIVE_DEADLINE_SECONDS),
    "migration.drainTimeout": _duration(m.DEFAULT_DRAIN_TIMEOUT_SECONDS),
    "cleanup.operations": list(m.DEFAULT_CLEANUP_OPERATIONS),  # replaces the deprecated cleanup.tasks
}


def describe(value: Any) -> str:
    """A default as the descriptions state it: ``true``, ``2s``, ``a and b``, ``requests cpu 100m, ...``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        words = [describe(v) for v in value]
        return " and ".join([", ".join(words[:-1]), words[-1]]) if len(words) > 1 else "".join(words)
    if isinstance(value, dict):
        return "; ".join(
            f"{key} " + (", ".join(f"{k} {v}" for k, v in sub.items()) if isinstance(sub, dict) else describe(sub))
            for key, sub in value.items()
        )
    return str(value)


def spec_property(crd: dict[str, Any], path: str) -> dict[str, Any]:
    """The schema of ``spec.<path>`` (KeyError naming the path when it does not exist)."""
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for part in path.split("."):
        props = schema.get("properties") or {}
        if part not in props:
            raise KeyError(f"spec.{path}: no such field in the CRD template (at {part!r})")
        schema = props[part]
    return schema


def generate(template: dict[str, Any]) -> dict[str, Any]:
    """The CRD: ``template`` with the model's defaults written in. Raises ValueError when a field has no
    ``$default`` in its description, or a ``$default`` is left with no default to fill it."""
    crd = copy.deepcopy(template)
    for path, value in [*CRD_DEFAULTS.items(), *DESCRIBED_DEFAULTS.items()]:
        schema = spec_property(crd, path)
        if "default" in schema:
            raise ValueError(f"spec.{path}: the template sets default:; its default belongs in model.py")
        text = schema.get("description", "")
        if PLACEHOLDER not in text:
            raise ValueError(f"spec.{path}: its description must say where the default goes ({PLACEHOLDER})")
        schema["description"] = text.replace(PLACEHOLDER, describe(value))
        if path in CRD_DEFAULTS:
            items = list(schema.items())
            at = next((i + 1 for i, (k, _) in enumerate(items) if k in ("type", "enum")), 0)
            schema.clear()
            schema.update([*items[:at], ("default", copy.deepcopy(value)), *items[at:]])
    if PLACEHOLDER in json.dumps(crd):
        raise ValueError(f"a description still says {PLACEHOLDER}: add its field to crd.CRD_DEFAULTS")
    return crd


class _Dumper(yaml.SafeDumper):
    """Short leaf mappings and scalar lists on one line, as a hand-written CRD has them."""


def _is_leaf(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def _represent_dict(dumper: yaml.SafeDumper, data: dict[str, Any]) -> yaml.Node:
    flat = all(_is_leaf(v) or (isinstance(v, list) and all(map(_is_leaf, v))) for v in data.values())
    # CEL rules stay in block style: the rule and its message each on their own line.
    flow = not data or (flat and "rule" not in data and len(json.dumps(data)) <= 150)
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=all(map(_is_leaf, data)))


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    # CEL rules quote with '; double quotes keep them readable instead of doubling every one.
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"' if "'" in data else None)


_Dumper.add_representer(dict, _represent_dict)
_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(list, _represent_list)


def dump(crd: dict[str, Any], header: str) -> str:
    body = yaml.dump(crd, Dumper=_Dumper, sort_keys=False, width=4096, allow_unicode=True)
    return header + body
