"""Only jobworker.store talks SQL to PostgreSQL: no other module opens a connection, a cursor or a pool, runs
SQL text, or renders a named query itself (issue 14: one data layer).

The check reads the source (an AST walk, so strings and comments never count). ``.execute(...)`` is allowed
only with a declared query (``queries.NAME``): that is the store's own ``execute``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [ROOT / "worker_image" / "jobworker", ROOT / "operator" / "jobworker_operator"]

ALLOWED = {
    "jobworker/store.py": "the store itself",
    "jobworker/listener.py": (
        "LISTEN waits for notifications on a session of its own (a pooled connection cannot be held for ever); "
        "it runs only `listen` and a `select 1` keepalive, no named query"
    ),
}
POOLS = {"AsyncConnectionPool", "ConnectionPool", "NullConnectionPool", "AsyncNullConnectionPool"}
RENDERING = {"query", "render"}


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def _is_psycopg_connection(node: ast.expr) -> bool:
    """``psycopg``, ``psycopg.AsyncConnection``, ``AsyncConnection``...: not, say, the Kubernetes ``Api``."""
    dotted = _dotted(node)
    return dotted == "psycopg" or dotted.endswith("Connection")


def _is_declared_query(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "queries"


def violations(tree: ast.AST) -> list[str]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        where = f"line {line}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            if any(name.split(".")[0] == "psycopg_pool" for name in names):
                found.append((line, f"{where}: imports psycopg_pool"))
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in POOLS:
            found.append((line, f"{where}: builds a connection pool ({name})"))
        elif isinstance(func, ast.Attribute) and (
            name == "cursor" or (name == "connect" and _is_psycopg_connection(func.value))
        ):
            found.append((line, f"{where}: opens a {name}"))
        elif isinstance(func, ast.Attribute) and name in ("execute", "executemany"):
            if not node.args or not _is_declared_query(node.args[0]):
                found.append((line, f"{where}: runs SQL that is not a declared query (.{name})"))
        elif (
            isinstance(func, ast.Attribute)
            and name in RENDERING
            and isinstance(func.value, ast.Name)
            and func.value.id == "sql"
        ):
            found.append((line, f"{where}: renders a named query itself (sql.{name})"))
    return [text for _, text in sorted(found)]


def test_only_the_store_talks_sql_to_postgresql() -> None:
    problems = []
    for package in PACKAGES:
        for path in sorted(package.rglob("*.py")):
            rel = path.relative_to(package.parent).as_posix()
            if rel in ALLOWED:
                continue
            problems += [f"{rel} {v}" for v in violations(ast.parse(path.read_text(), str(path)))]
    assert not problems, (
        "SQL outside jobworker.store: declare the query in jobworker/queries.py and run it through JobStore "
        "(store.all/one/execute/transaction):\n" + "\n".join(problems)
    )


def test_every_allowlisted_module_exists() -> None:
    for rel in ALLOWED:
        assert any((package.parent / rel).exists() for package in PACKAGES), f"stale allowlist entry {rel}"


def test_the_check_catches_each_way_around_the_store() -> None:
    source = """
import psycopg_pool
conn = await psycopg.AsyncConnection.connect(url)
cur = conn.cursor()
await conn.execute("select 1")
await conn.execute(sql.query("list_jobs", schema))
pool = AsyncConnectionPool(url)
await store.execute(queries.HEARTBEAT, params)
"""
    found = violations(ast.parse(source))
    assert [v.split(":", 1)[1].strip() for v in found] == [
        "imports psycopg_pool",
        "opens a connect",
        "opens a cursor",
        "runs SQL that is not a declared query (.execute)",
        "renders a named query itself (sql.query)",
        "runs SQL that is not a declared query (.execute)",
        "builds a connection pool (AsyncConnectionPool)",
    ], found
    assert violations(ast.parse("api = await Api.connect(settings)")) == []
