"""SQL lives in .sql files: one operation per file under queries/, loaded by name.

A file may hold variants as ``-- name: <name>`` blocks, each preceded by a one-line description.
``__SCHEMA__`` stands for the schema; it is replaced by a quoted identifier, never by raw text.

This loader is the one place where SQL text becomes a ``LiteralString`` (see ``_trusted``); everything
that runs SQL gets it from here, through ``jobworker.store``.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import LiteralString, cast

from psycopg import sql as pgsql

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.M)


def _load() -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in sorted(resources.files(__package__).joinpath("queries").iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        text = entry.read_text()
        parts = _NAME.split(text)
        if len(parts) == 1:
            out[entry.name.removesuffix(".sql")] = text.strip()
            continue
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in out:
                raise RuntimeError(f"duplicate query name {name} in {entry.name}")
            out[name] = body.strip()
    return out


queries: dict[str, str] = _load()


def quote_schema(schema: str) -> str:
    return pgsql.Identifier(schema).as_string(None)


def _trusted(text: str, schema: str) -> LiteralString:
    """``text`` with the schema filled in, declared a literal: the one place SQL text is trusted.

    Why this is sound: ``text`` is read from this package's own .sql files (never from input), and the
    only part that varies, the schema, is inserted as ``psycopg.sql.Identifier`` quotes it. So the result
    is as fixed as a literal written in the code, and every value still travels as a ``%(name)s``
    parameter. The cast says so once here, instead of at every call site.
    """
    # mypy reads LiteralString as str (so it calls this cast redundant); checkers that enforce it need the cast.
    return cast(LiteralString, text.replace("__SCHEMA__", quote_schema(schema)))  # type: ignore[redundant-cast]


@cache
def query(name: str, schema: str) -> LiteralString:
    """The named query with the schema placeholder filled in."""
    return _trusted(queries[name], schema)


def migration_files() -> dict[str, list[tuple[int, str]]]:
    """Migrations by family (``graphile``, ``jobworker``), each sorted by id."""
    found: dict[str, list[tuple[int, str]]] = {}
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        match = re.fullmatch(r"(\w+?)_(\d+)\.sql", entry.name)
        if match:
            found.setdefault(match[1], []).append((int(match[2]), entry.read_text()))
    return {family: sorted(items) for family, items in found.items()}


def render(text: str, schema: str) -> LiteralString:
    """A migration file's text (from ``migration_files``) with the schema filled in."""
    return _trusted(text, schema)
