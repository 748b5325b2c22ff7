"""charts/jobworker/crds/ must be an exact copy of crds/ (scripts/sync_chart_crds.sh keeps them in sync)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.chart.helpers import CHART_DIR, REPO_ROOT

SOURCE = REPO_ROOT / "crds"
COPY = CHART_DIR / "crds"
FIX = "run scripts/sync_chart_crds.sh"


def _manifests(directory: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(directory.glob("*.y*ml"))}


def test_source_crds_exist() -> None:
    if not _manifests(SOURCE):
        pytest.fail("crds/ holds no CRD manifests", pytrace=False)


def test_chart_crds_are_identical_copies() -> None:
    source, copy = _manifests(SOURCE), _manifests(COPY)
    assert sorted(copy) == sorted(source), (
        f"charts/jobworker/crds/ has {sorted(copy)}, crds/ has {sorted(source)}; {FIX}"
    )
    differing = [name for name in source if source[name].read_bytes() != copy[name].read_bytes()]
    assert not differing, f"charts/jobworker/crds/ differs from crds/ in {differing}; {FIX}"


def test_sync_script_check_mode_agrees() -> None:
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "sync_chart_crds.sh"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_chart_crds_are_the_jobworker_crds() -> None:
    for path in _manifests(COPY).values():
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            assert doc["kind"] == "CustomResourceDefinition", path
            assert doc["spec"]["group"] == "jobworker.dev", path
