"""Dependency floors that a security fix depends on."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def requirement(name: str) -> Requirement:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    [found] = [Requirement(r) for r in project["dependencies"] if Requirement(r).name == name]
    return found


def test_pyjwt_excludes_the_release_that_matched_the_issuer_as_a_substring() -> None:
    # PyJWT 2.10.0 accepted iss="Upstas" for issuer="Upstash" (CVE-2024-53861); the endpoint checks iss.
    spec = requirement("pyjwt").specifier
    assert "2.10.0" not in spec and "2.9.0" not in spec
    assert "2.10.1" in spec
    assert metadata.version("pyjwt") in spec
