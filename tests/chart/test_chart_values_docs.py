"""values.yaml documents every value (helm-docs `# --` comments) and values.schema.json covers every value."""

from __future__ import annotations

import json
from typing import Any

import yaml

from tests.chart.helpers import CHART_DIR

VALUES = CHART_DIR / "values.yaml"
SCHEMA = CHART_DIR / "values.schema.json"
# Values whose children are free-form Kubernetes objects: documented and typed as a whole.
OPAQUE = {
    "resources",
    "podSecurityContext",
    "securityContext",
    "metrics.grafanaDashboard.labels",
}


def _documented_keys() -> set[str]:
    """Dotted paths of the keys that directly follow a `# --` comment block."""
    documented: set[str] = set()
    stack: list[tuple[int, str]] = []
    pending = False
    for raw in VALUES.read_text().splitlines():
        stripped = raw.strip()
        if not stripped:
            continue
        indent = len(raw) - len(raw.lstrip())
        if stripped.startswith("# --"):
            pending = True
            continue
        if stripped.startswith("#"):
            continue
        if stripped.startswith("- ") or ":" not in stripped:
            continue
        key = stripped.split(":", 1)[0]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        if pending:
            documented.add(".".join(k for _, k in stack))
        pending = False
    return documented


def _leaves(values: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in OPAQUE:
            out |= _leaves(value, path + ".")
        else:
            out.add(path)
    return out


def test_every_value_is_documented() -> None:
    values = yaml.safe_load(VALUES.read_text())
    undocumented = sorted(_leaves(values) - _documented_keys())
    assert not undocumented, f"values.yaml: add a `# --` comment above {undocumented}"


def _schema_at(schema: dict[str, Any], path: str) -> dict[str, Any] | None:
    node: dict[str, Any] | None = schema
    for part in path.split("."):
        if node is None:
            return None
        node = node.get("properties", {}).get(part)
    return node


def test_schema_covers_every_value_and_is_closed() -> None:
    schema = json.loads(SCHEMA.read_text())
    values = yaml.safe_load(VALUES.read_text())
    missing = sorted(p for p in _leaves(values) if _schema_at(schema, p) is None)
    assert not missing, f"values.schema.json has no entry for {missing}"
    assert schema["additionalProperties"] is False


def test_defaults_satisfy_the_schema() -> None:
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load(VALUES.read_text()), schema)


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["kubeVersion"] == ">=1.28.0-0"
    assert chart["appVersion"]
    import tomllib

    project = tomllib.loads((CHART_DIR.parents[1] / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"], "appVersion follows the jobworker release"
