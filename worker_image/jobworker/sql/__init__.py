"""SQL lives in .sql files: one operation per file under queries/, loaded by name.

A file may hold variants as ``-- name: <name>`` blocks, each preceded by a one-line description.
``__SCHEMA__`` stands for the schema; it is replaced by a quoted identifier, never by raw text.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import LiteralString

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


@cache
def query(name: str, schema: str) -> LiteralString:
    """The named query with the schema placeholder filled in, as a literal for psycopg."""
    text: str = queries[name].replace("__SCHEMA__", quote_schema(schema))
    return text


def migration_files() -> dict[str, list[tuple[int, str]]]:
    """Migrations by family (``graphile``, ``jobworker``), each sorted by id."""
    found: dict[str, list[tuple[int, str]]] = {}
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        match = re.fullmatch(r"(\w+?)_(\d+)\.sql", entry.name)
        if match:
            found.setdefault(match[1], []).append((int(match[2]), entry.read_text()))
    return {family: sorted(items) for family, items in found.items()}


def render(text: str, schema: str) -> LiteralString:
    rendered: str = text.replace("__SCHEMA__", quote_schema(schema))
    return rendered
