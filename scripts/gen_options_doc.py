"""Generate docs/options.md from WorkerSettings and EndpointSettings: each default is written once, in settings.py.

``--check`` fails when the committed file is stale (a test runs it).
"""

from __future__ import annotations

import ast
import dataclasses
import sys
from pathlib import Path

from jobworker import settings

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "options.md"
FLAGS = {
    "concurrency": "--concurrency",
    "poll_interval": "--poll-interval",
    "queues": "--queue (repeatable)",
    "forbidden_flags": "--forbidden-flag (repeatable)",
    "batch": "--batch",
    "graceful_shutdown": "--graceful-shutdown",
    "http_port": "--http-port",
    "heartbeat_interval": "--heartbeat-interval",
    "sweep_threshold": "--sweep-threshold",
}


def docstrings(name: str = "WorkerSettings") -> dict[str, str]:
    tree = ast.parse(Path(settings.__file__).read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)
    out: dict[str, str] = {}
    for node, following in zip(cls.body, cls.body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
                out[node.target.id] = " ".join(str(following.value.value).split())
    return out


def render() -> str:
    docs = docstrings()
    lines = [
        "# Worker options",
        "",
        "Generated from `worker_image/jobworker/settings.py` by `scripts/gen_options_doc.py`; do not edit.",
        "Precedence: CLI flag, then environment variable, then default. Durations accept `500ms`, `30s`, `5m`, `1h`.",
        "",
        "| option | env | flag | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for f in dataclasses.fields(settings.WorkerSettings):
        env = f"`JOBWORKER_{f.name.upper()}`" + (" or `JOBS_CONCURRENCY`" if f.name == "concurrency" else "")
        flag = f"`{FLAGS[f.name]}`" if f.name in FLAGS else "—"
        default = "unset" if f.default is None else f"`{f.default}`"
        lines.append(f"| `{f.name}` | {env} | {flag} | {default} | {docs.get(f.name, '')} |")
    lines += [
        "",
        "# Job endpoint options (`jobworker serve`)",
        "",
        "The QStash receiver: `jobworker serve`, and `create_app`/`asgi_app` for `replay_database_url` (see",
        "docs/qstash-endpoint.md). Every option has the flag `--<option>` with `-` for `_`.",
        "",
        "| option | env | flag | default | meaning |",
        "|---|---|---|---|---|",
    ]
    docs = docstrings("EndpointSettings")
    for f in dataclasses.fields(settings.EndpointSettings):
        flag = "--" + f.name.replace("_", "-")
        default = "unset" if f.default is None else f"`{f.default}`"
        lines.append(f"| `{f.name}` | `JOBWORKER_{f.name.upper()}` | `{flag}` | {default} | {docs.get(f.name, '')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print("docs/options.md is stale: run python scripts/gen_options_doc.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
