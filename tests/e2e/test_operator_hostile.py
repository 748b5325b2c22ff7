"""Hostile and odd input on the real control plane (issue 11): secrets in status/events/logs, objects that
only carry a pool's labels, validation at admission, and Hypothesis fuzzing of the CRD by server-side dry-run.

Run: .venv/bin/python -m pytest -q tests/e2e/test_operator_hostile.py  (kwok nodes; pods never run)
"""

from __future__ import annotations

import base64
import json
import re
import string
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from operator_fixtures import OperatorProcess, wait_for

from jobworker_operator import plan, render
from jobworker_operator.model import Pool

TIMEOUT = 120
CANARY = "CANARYe2e4k"
FIELD_NAMED = re.compile(r"spec\.\w|metadata\.name|\b(workers|scheduler|sweep|cleanup|metrics|migration|provider)\.\w")


def manifest(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "image": "registry.example/jobworker-app:1.0",
        "tasks": "app.tasks",
        "provider": {"type": "graphile", "graphile": {"databaseUrlSecretRef": {"name": "db"}}},
        "migration": {"enabled": False},
    }
    body.update(spec)
    return {
        "apiVersion": "jobworker.dev/v1alpha1",
        "kind": "JobWorkerPool",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def get(kubectl: Any, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    proc = kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def condition(pool: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for cond in ((pool or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return {}


def secret(kubectl: Any, namespace: str, value: bytes, name: str = "db") -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"url": base64.b64encode(value).decode()},
    }
    kubectl("apply", "-f", "-", input=json.dumps(doc))


def events(kubectl: Any, namespace: str) -> str:
    return str(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)


# ------------------------------------------------------------------------------------- 1. secrets


@pytest.mark.parametrize(
    "value",
    [f"{CANARY}=x", f"postgresql://app:pw%zz{CANARY}@127.0.0.1:1/db", f"postgresql://app:p@ss={CANARY}@127.0.0.1:1/db"],
    ids=["equals", "bad-percent", "raw-at"],
)
def test_a_canary_secret_never_reaches_status_events_or_the_operator_log(
    kubectl: Any, operator: OperatorProcess, namespace: str, value: str
) -> None:
    secret(kubectl, namespace, value.encode())
    kubectl("apply", "-f", "-", input=json.dumps(manifest(namespace, "canary")))

    def degraded() -> dict[str, Any] | None:
        cond = condition(get(kubectl, namespace, "jwp", "canary"), "Degraded")
        return cond if "not a valid PostgreSQL connection string" in cond.get("message", "") else None

    cond = wait_for("Degraded naming the Secret", degraded, timeout=TIMEOUT)
    assert f"Secret {namespace}/db key 'url'" in cond["message"]
    # A few more timer passes, so that anything that would leak has had its chance.
    wait_for(
        "three more reconciles",
        lambda: (operator.metric("jobworker_pool_reconcile_total", namespace=namespace, pool="canary") or 0) >= 4,
        timeout=TIMEOUT,
    )
    everything = [
        json.dumps(get(kubectl, namespace, "jwp", "canary")),
        events(kubectl, namespace),
        operator.log_path.read_text(errors="replace"),
        operator.metrics(),
    ]
    assert not [text for text in everything if CANARY in text]
    assert operator.alive()


def test_a_secret_that_is_not_utf8_degrades_the_pool(kubectl: Any, operator: OperatorProcess, namespace: str) -> None:
    secret(kubectl, namespace, b"postgresql://app:\xff\xfe@db/x")
    kubectl("apply", "-f", "-", input=json.dumps(manifest(namespace, "latin")))

    def degraded() -> dict[str, Any] | None:
        cond = condition(get(kubectl, namespace, "jwp", "latin"), "Degraded")
        return cond if cond.get("status") == "True" else None

    cond = wait_for("Degraded: not UTF-8", degraded, timeout=TIMEOUT)
    assert "is not UTF-8 text" in cond["message"]
    assert operator.alive()


# ------------------------------------------------------------------------------------- 2. pruning


def test_objects_with_only_the_pools_labels_are_left_alone_with_an_event(
    kubectl: Any, operator: OperatorProcess, namespace: str
) -> None:
    kubectl("apply", "-f", "-", input=json.dumps(manifest(namespace, "owner", provider={"type": "noop"})))
    wait_for(
        "the pool's status",
        lambda: (
            get(kubectl, namespace, "jwp", "owner")
            and condition(get(kubectl, namespace, "jwp", "owner"), "Ready").get("status") == "True"
        ),
        timeout=TIMEOUT,
    )
    lookalike = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "someone-elses",
            "namespace": namespace,
            "labels": {"jobworker.dev/pool": "owner", "app.kubernetes.io/managed-by": "jobworker-operator"},
        },
        "data": {"keep": "me"},
    }
    kubectl("apply", "-f", "-", input=json.dumps(lookalike))

    def reported() -> bool:
        return "NotOwned" in events(kubectl, namespace) and "someone-elses" in events(kubectl, namespace)

    wait_for("a NotOwned event", reported, timeout=TIMEOUT)
    assert get(kubectl, namespace, "configmap", "someone-elses") is not None


# --------------------------------------------------------------------------- 7. validation at admission

REJECTED = [
    (
        {"provider": {"type": "graphile", "graphile": {"databaseUrlSecretRef": {"name": "db"}, "schema": "a-b"}}},
        "provider.graphile.schema must be a plain PostgreSQL identifier",
    ),
    (
        {"scheduler": {"schedules": [{"id": "a", "task": "t", "cron": "* * * * *", "timezone": "Not a zone!"}]}},
        "timezone must be an IANA time zone name",
    ),
    (
        {"scheduler": {"schedules": [{"id": "a", "task": "t" * 129, "cron": "* * * * *"}]}},
        "spec.scheduler.schedules[0].task",
    ),
    (
        {"scheduler": {"schedules": [{"id": "a", "task": "t", "cron": "* * * * *", "queue": "q" * 129}]}},
        "spec.scheduler.schedules[0].queue",
    ),
    (
        {"scheduler": {"schedules": [{"id": "a", "task": "t", "cron": "* * * * *", "jobKey": "k" * 513}]}},
        "spec.scheduler.schedules[0].jobKey",
    ),
    (
        {"scheduler": {"schedules": [{"id": "a", "task": "t", "cron": "* * * * *", "priority": 40000}]}},
        "spec.scheduler.schedules[0].priority",
    ),
    (
        {"scheduler": {"schedules": [{"id": "a", "task": "t", "cron": "* * * * *", "maxAttempts": 0}]}},
        "spec.scheduler.schedules[0].maxAttempts",
    ),
    ({"workers": {"pollInterval": "0s"}}, "workers.pollInterval must be greater than 0"),
    (
        {"provider": {"type": "qstash", "qstash": {"secretRef": {"name": "qs"}, "callbackUrl": "http://x.example/cb"}}},
        "provider.qstash.callbackUrl must be an https:// URL",
    ),
    (
        {
            "provider": {
                "type": "qstash",
                "qstash": {"secretRef": {"name": "qs"}, "callbackUrl": "http://localhost.x.example"},
            }
        },
        "provider.qstash.callbackUrl must be an https:// URL",
    ),
    ({"workers": {"gracefulShutdown": "1m", "gracefulShutdownSeconds": 30}}, "set gracefulShutdown only"),
    ({"workers": {"gracefulShutdown": "30"}}, "spec.workers.gracefulShutdown"),
    ({"migration": {"activeDeadline": "0s"}}, "migration.activeDeadline must be greater than 0"),
    ({"migration": {"drainTimeout": "5m", "drainTimeoutSeconds": 300}}, "set drainTimeout only"),
    ({"cleanup": {"operations": ["gc-job-queues"], "tasks": ["gc-job-queues"]}}, "set operations only"),
    (
        {"workers": {"autoscaling": {"maxReplicas": 2, "scaleDownDelay": "1m", "scaleDownDelaySeconds": 60}}},
        "set scaleDownDelay only",
    ),
    ({"workers": {"pollInterval": "00ms"}}, "workers.pollInterval must be greater than 0"),
    ({"workers": {"queues": [""]}}, "spec.workers.queues[0]"),
    ({"workers": {"forbiddenFlags": ["ok", ""]}}, "spec.workers.forbiddenFlags[1]"),
]


@pytest.mark.parametrize(("spec", "message"), REJECTED, ids=[m for _, m in REJECTED])
def test_bad_input_is_rejected_at_admission_naming_the_field(
    kubectl: Any, jwp_crd: str, namespace: str, spec: dict[str, Any], message: str
) -> None:
    doc = json.dumps(manifest(namespace, "bad", **spec))
    proc = kubectl("apply", "--dry-run=server", "-f", "-", input=doc, check=False)
    assert proc.returncode != 0, proc.stdout
    assert message in proc.stderr, proc.stderr


def test_the_limits_themselves_are_admitted(kubectl: Any, jwp_crd: str, namespace: str) -> None:
    schedule = {
        "id": "a",
        "task": "t" * 128,
        "cron": "* * * * *",
        "queue": "q" * 128,
        "jobKey": "k" * 512,
        "priority": -32768,
        "maxAttempts": 32767,
        "timezone": "America/Argentina/Buenos_Aires",
    }
    doc = manifest(
        namespace, "edge", workers={"pollInterval": "1ms", "queues": ["q"]}, scheduler={"schedules": [schedule]}
    )
    kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(doc))


@pytest.mark.parametrize(
    "url",
    ["https://x.example/cb", "HTTPS://X.example", "http://localhost:8080/cb", "http://127.0.0.1", "http://[::1]:80/"],
)
def test_https_and_loopback_callback_urls_are_admitted(kubectl: Any, jwp_crd: str, namespace: str, url: str) -> None:
    provider = {"type": "qstash", "qstash": {"secretRef": {"name": "qs"}, "callbackUrl": url}}
    kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(manifest(namespace, "cb", provider=provider)))


def test_deprecated_fields_are_still_admitted_and_get_no_default(kubectl: Any, jwp_crd: str, namespace: str) -> None:
    old = manifest(
        namespace,
        "old",
        workers={"gracefulShutdownSeconds": 45},
        migration={"drainTimeoutSeconds": 60},
        cleanup={"tasks": ["delete-permanently-failed-jobs"]},
    )
    proc = kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(old))
    admitted = json.loads(proc.stdout)
    # Neither the new field nor the other deprecated ones are defaulted: the model applies those defaults.
    assert admitted["spec"]["workers"]["gracefulShutdownSeconds"] == 45
    assert "gracefulShutdown" not in admitted["spec"]["workers"]
    assert set(admitted["spec"]["migration"]) == {"drainTimeoutSeconds", "enabled", "backoffLimit"}
    pool = Pool.from_body({**admitted, "metadata": {**admitted["metadata"], "uid": "u"}})
    assert (pool.workers.graceful_shutdown_seconds, pool.migration.drain_timeout_seconds) == (45, 60)
    assert pool.migration.active_deadline_seconds == 600
    assert "operations" not in admitted["spec"]["cleanup"]
    assert pool.cleanup.operations == ("delete-permanently-failed-jobs",)


# ------------------------------------------------------------------------------ fuzzing the CRD

durations = st.one_of(
    st.sampled_from(["0s", "1ms", "2s", "5m", "1h30m", "1d", "", "5x", "-1s", "1.5s"]), st.text(max_size=6)
)
names_ = st.text(string.ascii_letters + string.digits + "_-.$ /", max_size=12)
ints = st.one_of(st.integers(min_value=-40000, max_value=40000), st.sampled_from([0, 1, 32767, 32768, -32769]))
schedules = st.fixed_dictionaries(
    {
        "id": st.text(string.ascii_lowercase, min_size=1, max_size=6),
        "task": names_,
        "cron": st.sampled_from(["* * * * *", "0 3 * * *", "* * *", "61 * * * *", "0 0 1-31 * 0-6"]),
    },
    optional={
        "timezone": st.sampled_from(["UTC", "Europe/Berlin", "Mars/Base", "", "a b"]),
        "queue": names_,
        "priority": ints,
        "maxAttempts": ints,
        "jobKey": names_,
        "backfill": durations,
        "jobKeyMode": st.sampled_from(["replace", "preserve_run_at", "bogus"]),
        "max": ints,
    },
)
specs = st.fixed_dictionaries(
    {},
    optional={
        "workers": st.fixed_dictionaries(
            {},
            optional={
                "replicas": ints,
                "concurrency": ints,
                "pollInterval": durations,
                "gracefulShutdownSeconds": ints,
                "gracefulShutdown": durations,
                "queues": st.lists(names_, max_size=2),
                "forbiddenFlags": st.lists(names_, max_size=2),
            },
        ),
        "scheduler": st.fixed_dictionaries(
            {}, optional={"schedules": st.lists(schedules, max_size=2), "replicas": ints, "enabled": st.booleans()}
        ),
        "sweep": st.fixed_dictionaries({}, optional={"sweepThreshold": durations, "recoveryDelay": durations}),
        "metrics": st.fixed_dictionaries({}, optional={"port": ints, "serviceMonitor": st.booleans()}),
        "migration": st.fixed_dictionaries(
            {}, optional={"enabled": st.booleans(), "backoffLimit": ints, "activeDeadline": durations}
        ),
        "provider": st.sampled_from(
            [
                {"type": "graphile", "graphile": {"databaseUrlSecretRef": {"name": "db"}}},
                {"type": "graphile", "graphile": {"databaseUrlSecretRef": {"name": "db"}, "schema": "jobs_2"}},
                {"type": "noop"},
                {"type": "qstash", "qstash": {"secretRef": {"name": "qs"}, "callbackUrl": "https://x.example"}},
                {"type": "qstash", "qstash": {"secretRef": {"name": "qs"}, "callbackUrl": "http://x.example"}},
            ]
        ),
    },
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(spec=specs)
def test_fuzzed_specs_are_rejected_naming_a_field_or_render_objects_the_api_server_admits(
    kubectl: Any, jwp_crd: str, fuzz_namespace: str, spec: dict[str, Any]
) -> None:
    doc = manifest(fuzz_namespace, "fuzz", **spec)
    proc = kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(doc), check=False)
    if proc.returncode != 0:
        # The path ("spec.workers.queues[0]: ...") or the rule's message ("sweep.sweepThreshold must ...") names it.
        assert FIELD_NAMED.search(proc.stderr), proc.stderr
        assert "Traceback" not in proc.stderr and "Internal error" not in proc.stderr, proc.stderr
        return
    admitted = json.loads(proc.stdout)  # with the CRD's defaults applied, as the operator will read it
    admitted["metadata"].setdefault("uid", "00000000-0000-0000-0000-000000000000")
    pool = Pool.from_body(admitted)
    children = render.children(pool, plan.components(pool), worker_replicas=plan.worker_replicas(pool, None))
    if pool.provider == "graphile" and pool.migration.enabled:
        children.append(render.render_migration_job(pool))
    # The dry-run pool does not exist to own anything; this cluster serves no ServiceMonitor kind.
    children = [c for c in children if c["kind"] != "ServiceMonitor"]
    for child in children:
        child["metadata"].pop("ownerReferences", None)
    if children:
        kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(children))


@pytest.fixture(scope="module")
def fuzz_namespace(kubectl: Any) -> Any:
    name = "e2e-hostile-fuzz"
    kubectl("create", "namespace", name, check=False)
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


# ------------------------------------------------------------------------------------- 5. /scale


def test_scale_reads_the_replicas_of_a_pool_that_left_them_unset(
    kubectl: Any, operator: OperatorProcess, namespace: str
) -> None:
    kubectl("apply", "-f", "-", input=json.dumps(manifest(namespace, "scaled")))

    def scale_replicas() -> Any:
        proc = kubectl("get", "jwp", "scaled", "-n", namespace, "--subresource=scale", "-o", "json", check=False)
        return json.loads(proc.stdout).get("spec", {}).get("replicas") if proc.returncode == 0 else None

    wait_for("/scale spec.replicas 1 (0 would leave an HPA idle)", lambda: scale_replicas() == 1, timeout=TIMEOUT)
    # Turning on the built-in autoscaler takes replicas away in the same change.
    patch = {"spec": {"workers": {"replicas": None, "autoscaling": {"maxReplicas": 3}}}}
    kubectl("patch", "jwp", "scaled", "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    assert "replicas" not in (get(kubectl, namespace, "jwp", "scaled") or {})["spec"]["workers"]
