"""queue.py is the port and providers/ its adapters: the adapters import the port, never the reverse
(issue 14, item 3: queue.py imported providers.graphile while providers imported queue.py)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "worker_image" / "jobworker"


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_port_imports_no_adapter_nor_what_runs_jobs() -> None:
    imports = imported_modules(PACKAGE / "queue.py")
    forbidden = {"jobworker.providers", "jobworker.worker", "jobworker.worker_utils", "jobworker.endpoint"}
    assert not {m for m in imports if any(m == f or m.startswith(f + ".") for f in forbidden)}, imports


def test_every_adapter_imports_the_port_or_nothing_of_it() -> None:
    for adapter in ("graphile.py", "qstash.py", "noop.py"):
        imports = imported_modules(PACKAGE / "providers" / adapter)
        assert "jobworker.queue.EnqueuedJob" in imports, f"providers/{adapter} does not return the port's type"


def test_one_health_server() -> None:
    # The scheduler and `jobworker serve` use httpserver's routes and body, also in the endpoint's ASGI app.
    endpoint = (PACKAGE / "endpoint.py").read_text()
    assert "start_health_server" not in endpoint and 'Reply(200, {"ok": True}))' not in endpoint
    assert "httpserver.add_health_routes" in endpoint and "httpserver.health_body" in endpoint
    assert "httpserver.start" in (PACKAGE / "scheduler.py").read_text()
