"""What the images do, without Docker: build a wheel of the repository, install it into clean virtualenvs
(worker: `.[qstash]`, operator: `.[operator]`, like the two Dockerfiles) and run the entrypoints.

Dependencies come from the local pip cache (or PyPI through pip). Each venv takes ~10-20 s when cached.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], *, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(REPO_ROOT)], cwd=out)
    assert proc.returncode == 0, f"pip wheel failed:\n{proc.stdout}\n{proc.stderr}"
    (built,) = out.glob("jobworker-*.whl")
    return built


def test_wheel_contains_both_packages_and_sql(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "jobworker/__init__.py" in names
    assert "jobworker_operator/__init__.py" in names
    assert any(n.startswith("jobworker/sql/migrations/") and n.endswith(".sql") for n in names), (
        "the SQL migrations are missing from the wheel (package-data)"
    )


def _venv(root: Path, wheel: Path, extra: str) -> Path:
    venv = root / f"venv-{extra}"
    proc = _run([sys.executable, "-m", "venv", str(venv)], cwd=root)
    assert proc.returncode == 0, proc.stderr
    proc = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{wheel}[{extra}]"], cwd=root)
    assert proc.returncode == 0, f"pip install {wheel.name}[{extra}] failed:\n{proc.stdout}\n{proc.stderr}"
    return venv


def test_worker_image_entrypoint(wheel: Path, tmp_path: Path) -> None:
    """worker_image/Dockerfile: ENTRYPOINT ["jobworker"] with the qstash extra."""
    venv = _venv(tmp_path, wheel, "qstash")
    proc = _run([str(venv / "bin" / "jobworker"), "--help"], cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, f"jobworker --help failed:\n{proc.stdout}\n{proc.stderr}"
    for command in ("worker", "scheduler", "migrate", "serve", "sweep-stale-workers", "cleanup"):
        assert command in proc.stdout, f"`jobworker --help` does not list {command}"


def test_operator_image_entrypoint(wheel: Path, tmp_path: Path) -> None:
    """operator/Dockerfile: ENTRYPOINT ["python", "-m", "jobworker_operator"] with the operator extra."""
    venv = _venv(tmp_path, wheel, "operator")
    proc = _run([str(venv / "bin" / "python"), "-m", "jobworker_operator", "--help"], cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, f"python -m jobworker_operator --help failed:\n{proc.stdout}\n{proc.stderr}"
    assert "--namespace" in proc.stdout and "--all-namespaces" in proc.stdout
