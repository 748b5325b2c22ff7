"""hack/images.py and hack/base_image.py without building anything: the Debian mirror read from apt sources,
the build context a .dockerignore admits, and the input key that decides whether an image is rebuilt."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.images.hack_modules import REPO_ROOT, load_images_module

images = load_images_module()
base_image = images.base_image


def _apt(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "sources.list.d").mkdir(exist_ok=True)
    return tmp_path


def test_mirror_from_a_deb822_sources_file(tmp_path: Path) -> None:
    apt = _apt(
        tmp_path,
        {
            "sources.list.d/debian.sources": (
                "# the archive\n"
                "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
                "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
                "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
                "Components: main\n"
            ),
        },
    )
    assert base_image.debian_mirror("bookworm", apt) == "http://mirror.example/debian"


def test_mirror_from_a_one_line_list_with_options(tmp_path: Path) -> None:
    apt = _apt(
        tmp_path,
        {
            "sources.list": "# deb http://commented.example/debian bookworm main\n"
            "deb-src http://src.example/debian bookworm main\n"
            "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main contrib\n",
        },
    )
    assert base_image.debian_mirror("bookworm", apt) == "http://one.example/debian"


def test_mirror_skips_disabled_entries_and_falls_back_to_the_debian_layout(tmp_path: Path) -> None:
    apt = _apt(
        tmp_path,
        {
            "sources.list.d/a.sources": "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\n"
            "Suites: bookworm\nComponents: main\n",
            "sources.list.d/b.list": "deb http://other.example/ubuntu noble main\n"
            "deb http://trixie.example/debian trixie main\n",
        },
    )
    # No enabled entry names bookworm; a Debian archive (…/debian) serves every suite.
    assert base_image.debian_mirror("bookworm", apt) == "http://trixie.example/debian"


def test_no_mirror_is_a_clear_error(tmp_path: Path) -> None:
    apt = _apt(tmp_path, {"sources.list.d/x.list": "deb http://other.example/ubuntu noble main\n"})
    with pytest.raises(images.ImageError, match="JOBWORKER_DEBIAN_MIRROR"):
        base_image.debian_mirror("bookworm", apt)


def test_the_repository_context_is_what_the_dockerignore_admits() -> None:
    files = images.context_files(REPO_ROOT)
    assert "pyproject.toml" in files and "README.md" in files
    assert "worker_image/jobworker/cli.py" in files
    assert "operator/jobworker_operator/__main__.py" in files
    assert any(f.startswith("worker_image/jobworker/sql/migrations/") for f in files)
    assert "worker_image/Dockerfile" not in files and "Makefile" not in files
    assert not any(f.startswith(("tests/", "hack/", ".git/", ".venv/")) for f in files)
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)


def test_dockerignore_rules() -> None:
    ignore = images.DockerIgnore(["# allow-list", "*", "!src/", "src/**/*.tmp", "!src/keep.tmp", "/docs/*.md"])
    assert ignore.excluded("README.md")
    assert not ignore.excluded("src/a.py")
    assert not ignore.excluded("src/pkg/b.py")
    assert ignore.excluded("src/pkg/b.tmp")
    assert ignore.excluded("src/b.tmp")
    assert not ignore.excluded("src/keep.tmp")
    assert ignore.may_readmit_under("src") and not ignore.may_readmit_under("docs")
    assert not images.DockerIgnore([]).excluded("anything/at/all")


def test_base_images_substitute_build_args(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "ARG BASE_IMAGE=python:3.11.13-slim-bookworm\n"
        "FROM ${BASE_IMAGE} AS builder\nRUN true\n"
        "FROM builder AS test\n"
        "FROM scratch AS empty\n"
        "FROM $BASE_IMAGE\nCOPY --from=builder /x /x\n"
    )
    assert images.base_images(dockerfile, {}) == ["python:3.11.13-slim-bookworm"]
    assert images.base_images(dockerfile, {"BASE_IMAGE": "localhost/jobworker-base:k"}) == [
        "localhost/jobworker-base:k"
    ]


def test_input_key_follows_admitted_files_only(tmp_path: Path) -> None:
    context = tmp_path / "context"
    (context / "app").mkdir(parents=True)
    (context / ".dockerignore").write_text("*\n!app/\n**/*.pyc\n")
    (context / "app" / "tasks.py").write_text("print(1)\n")
    (context / "notes.txt").write_text("not sent\n")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM jobworker:dev\nCOPY app/ /app/app/\n")

    def key(args: dict[str, str] | None = None, base_id: str = "sha256:1") -> str:
        return str(images.input_key(dockerfile, context, args or {}, {"jobworker:dev": base_id}))

    first = key()
    (context / "notes.txt").write_text("changed, still not sent\n")
    (context / "app" / "tasks.cpython-311.pyc").write_bytes(b"\0")
    assert key() == first
    assert key({"X": "1"}) != first
    assert key(base_id="sha256:2") != first  # the base was rebuilt
    (context / "app" / "tasks.py").write_text("print(2)\n")
    assert key() != first


def test_an_unknown_engine_is_refused() -> None:
    with pytest.raises(images.ImageError, match="JOBWORKER_IMAGE_ENGINE"):
        images.select_engine("podman")
