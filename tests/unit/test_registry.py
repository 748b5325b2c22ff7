"""JobRegistry composition and load_registry(--tasks module[:attribute])."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobworker import errors
from jobworker.jobs import JobContext, define_job
from jobworker.registry import JobRegistry, load_registry


async def noop(payload: Any, ctx: JobContext) -> None:
    pass


a = define_job("a", payload=dict, handler=noop)
b = define_job("b", payload=dict, handler=noop)
c = define_job("c", payload=dict, handler=noop)


def test_registry_composes_feature_registries() -> None:
    billing = JobRegistry([a])
    mail = JobRegistry([b])
    app = JobRegistry([c], include=[billing, mail])
    assert app.names == ["a", "b", "c"]
    assert len(app) == 3 and "b" in app and "z" not in app
    assert app.get("a") is a
    assert {job.name for job in app} == {"a", "b", "c"}


def test_adding_the_same_definition_twice_is_harmless() -> None:
    registry = JobRegistry([a, a], include=[JobRegistry([a])])
    assert registry.names == ["a"]


def test_two_definitions_with_one_name_are_refused() -> None:
    other_a = define_job("a", payload=dict, handler=noop)
    with pytest.raises(errors.ConfigurationError, match=r"job 'a' is defined twice .* rename one"):
        JobRegistry([a, other_a])
    with pytest.raises(errors.ConfigurationError, match="defined twice"):
        JobRegistry([a], include=[JobRegistry([other_a])])


def test_get_an_unknown_job_lists_the_known_ones() -> None:
    with pytest.raises(errors.UnknownTaskError, match="no job named 'z'; known jobs: a, b"):
        JobRegistry([b, a]).get("z")
    with pytest.raises(errors.UnknownTaskError, match="known jobs: none"):
        JobRegistry().get("z")


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("jw_test_"):
            del sys.modules[name]


def write(root: Path, name: str, body: str) -> None:
    header = "from jobworker import JobRegistry, define_job\n\nasync def h(p, ctx):\n    pass\n\n"
    (root / f"{name}.py").write_text(header + textwrap.dedent(body))


def test_load_registry_uses_the_modules_registry(modules: Path) -> None:
    write(modules, "jw_test_app", 'registry = JobRegistry([define_job("x", payload=dict, handler=h)])\n')
    assert load_registry("jw_test_app").names == ["x"]


def test_load_registry_by_attribute(modules: Path) -> None:
    write(
        modules,
        "jw_test_attr",
        """
        one = define_job("one", payload=dict, handler=h)
        jobs = JobRegistry([one, define_job("two", payload=dict, handler=h)])
        """,
    )
    assert load_registry("jw_test_attr:jobs").names == ["one", "two"]
    assert load_registry("jw_test_attr:one").names == ["one"]


def test_load_registry_collects_top_level_definitions(modules: Path) -> None:
    write(
        modules,
        "jw_test_loose",
        """
        first = define_job("first", payload=dict, handler=h)
        second = define_job("second", payload=dict, handler=h)
        """,
    )
    assert load_registry("jw_test_loose").names == ["first", "second"]


def test_load_registry_errors_name_the_spec(modules: Path) -> None:
    write(modules, "jw_test_empty", "x = 1\n")
    with pytest.raises(errors.ConfigurationError, match="--tasks 'jw_test_missing': cannot import"):
        load_registry("jw_test_missing")
    with pytest.raises(errors.ConfigurationError, match="module 'jw_test_empty' has no attribute 'nope'"):
        load_registry("jw_test_empty:nope")
    with pytest.raises(errors.ConfigurationError, match="found no JobRegistry named 'registry'"):
        load_registry("jw_test_empty")
