"""The test tree's import layout: only tests/e2e imports its modules under top-level names.

pytest's default ``prepend`` import mode imports a file outside a package under its bare name. Two such
directories each holding a ``conftest.py`` (or a ``helpers.py``) share one ``sys.modules`` entry, and the
later one wins: once tests/operator_unit's conftest took the name ``conftest``, and every real-node test
that imported from tests/e2e's errored. Every other directory is a package, so its modules are
``tests.<dir>.<module>`` and can never shadow tests/e2e's ``conftest``, ``node_fixtures`` or
``operator_fixtures``.
"""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
# tests/e2e is the one non-package directory: its modules import each other by bare name (operator_fixtures).
TOP_LEVEL_DIRS = {TESTS / "e2e"}


def python_dirs() -> set[Path]:
    return {p.parent for p in TESTS.rglob("*.py") if "node_modules" not in p.parts and "__pycache__" not in p.parts}


def test_every_test_directory_but_e2e_is_a_package() -> None:
    missing = sorted(
        str(d.relative_to(TESTS)) for d in python_dirs() - TOP_LEVEL_DIRS if not (d / "__init__.py").exists()
    )
    assert not missing, f"add an __init__.py to each of tests/{{{', '.join(missing)}}}"


def test_no_test_module_puts_a_directory_on_sys_path() -> None:
    pattern = re.compile(r"sys\.path\.(insert|append)\(.*(operator_unit|tests/|Path\(__file__\)\.parent\b)")
    offenders = [
        str(p.relative_to(TESTS))
        for p in TESTS.rglob("*.py")
        if p.parent not in TOP_LEVEL_DIRS and p != Path(__file__).resolve() and pattern.search(p.read_text())
    ]
    assert not offenders, f"import through the tests package instead (from tests.<dir> import ...): {offenders}"
