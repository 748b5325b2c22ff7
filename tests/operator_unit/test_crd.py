"""crd.py: the CRD is generated from the template and the model's defaults, and the committed files are
what the generator writes (crds/ and the chart's copy)."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from jobworker_operator import crd, model
from tests.operator_unit.helpers import body
from tests.operator_unit.test_model import apply_schema_defaults

ROOT = Path(__file__).parents[2]
TEMPLATE = ROOT / "operator" / "crd" / "jobworkerpools.template.yaml"


def gen_crd() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_crd", ROOT / "scripts" / "gen_crd.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def template() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(TEMPLATE.read_text())
    return doc


def test_the_committed_crds_are_the_generated_ones() -> None:
    assert gen_crd().main(["--check"]) == 0, "run: python scripts/gen_crd.py (make crds)"


def test_a_changed_model_default_makes_the_committed_crd_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(crd.CRD_DEFAULTS, "workers.pollInterval", "3s")
    assert gen_crd().main(["--check"]) == 1


def test_the_crd_defaults_a_minimal_pool_as_the_model_does() -> None:
    """Field by field, also inside arrays: the API server's defaulting, then from_body, equals from_body."""
    minimal = body(
        workers={"autoscaling": {"maxReplicas": 5}},
        scheduler={"schedules": [{"id": "a", "task": "t", "cron": "* * * * *"}]},
        dashboard={"databaseUrlSecretRef": {"name": "ro"}},
        provider={
            "type": "graphile",
            "graphile": {"databaseUrlSecretRef": {"name": "db"}, "workerDatabaseUrlSecretRef": {"name": "w"}},
        },
    )
    schema = crd.generate(template())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    defaulted = {**minimal, "spec": apply_schema_defaults(schema, minimal["spec"])}
    assert model.Pool.from_body(defaulted) == model.Pool.from_body(minimal)


def test_every_model_default_lands_in_the_schema_and_the_description() -> None:
    generated = crd.generate(template())
    for path, value in crd.CRD_DEFAULTS.items():
        prop = crd.spec_property(generated, path)
        assert prop["default"] == value, path
        assert f"Default {crd.describe(value)}" in prop["description"], path
    for path, value in crd.DESCRIBED_DEFAULTS.items():
        prop = crd.spec_property(generated, path)
        assert "default" not in prop, path
        assert f"Default {crd.describe(value)}." in prop["description"], path


def test_a_default_written_in_the_template_is_refused() -> None:
    doc = template()
    crd.spec_property(doc, "workers.pollInterval")["default"] = "1s"
    with pytest.raises(ValueError, match=r"spec.workers.pollInterval: the template sets default:"):
        crd.generate(doc)


def test_a_description_without_the_placeholder_is_refused() -> None:
    doc = template()
    crd.spec_property(doc, "sweep.sweepThreshold")["description"] = "Heartbeat age. Default 5m."
    with pytest.raises(ValueError, match=r"spec.sweep.sweepThreshold: its description must say where"):
        crd.generate(doc)


def test_a_placeholder_with_no_model_default_is_refused() -> None:
    doc = template()
    crd.spec_property(doc, "workers.replicas")["description"] += " Default $default."
    with pytest.raises(ValueError, match=r"add its field to crd.CRD_DEFAULTS"):
        crd.generate(doc)


def test_generation_leaves_the_template_alone() -> None:
    doc = template()
    before = copy.deepcopy(doc)
    crd.generate(doc)
    assert doc == before


@pytest.mark.parametrize(
    ("value", "text"),
    [(True, "true"), ("2s", "2s"), (["a", "b"], "a and b"), (["a", "b", "c"], "a, b and c"), (9464, "9464")],
)
def test_describe(value: Any, text: str) -> None:
    assert crd.describe(value) == text
