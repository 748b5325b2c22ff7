"""A small Dockerfile parser for the image tests: instructions (continuations joined) grouped by stage."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse(path: Path) -> list[Stage]:
    return parse_with_args(path)[1]


def parse_with_args(path: Path) -> tuple[dict[str, str | None], list[Stage]]:
    """The global ARGs (declared before the first FROM, with their defaults) and the stages."""
    global_args: dict[str, str | None] = {}
    stages: list[Stage] = []
    pending = ""
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comments inside a continued instruction are dropped by the Dockerfile frontend
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        keyword, _, value = text.partition(" ")
        keyword = keyword.upper()
        value = value.strip()
        if keyword == "FROM":
            parts = [p for p in value.split() if not p.startswith("--")]
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name, line=start))
            continue
        if not stages:
            if keyword == "ARG":
                name, eq, default = value.partition("=")
                global_args[name.strip()] = default.strip().strip('"') if eq else None
                continue
            raise ValueError(f"{path}:{start}: {keyword} before the first FROM")
        stages[-1].instructions.append(Instruction(keyword, value, start))
    return global_args, stages


ARG_REFERENCE = re.compile(r"^\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))$")


def arg_reference(image: str) -> str | None:
    """The ARG name of ``FROM ${NAME}`` / ``FROM $NAME``; None for a literal image."""
    match = ARG_REFERENCE.match(image)
    return (match.group("braced") or match.group("bare")) if match else None


def exec_form(value: str) -> list[str]:
    """The JSON (exec) form of ENTRYPOINT/CMD; raises for the shell form."""
    parsed = json.loads(value)
    if not isinstance(parsed, list) or not all(isinstance(p, str) for p in parsed):
        raise ValueError(f"not an exec-form list: {value}")
    return parsed


PINNED_TAG = re.compile(r"^[^:@]+:(?P<tag>[0-9]+\.[0-9]+\.[0-9]+[A-Za-z0-9._-]*)$")
PINNED_DIGEST = re.compile(r"^[^@]+@sha256:[0-9a-f]{64}$")


def is_pinned(image: str) -> bool:
    """Exact tag with a patch version (python:3.11.13-slim-bookworm) or a sha256 digest; never latest."""
    if "latest" in image.split("/")[-1]:
        return False
    return bool(PINNED_DIGEST.match(image) or PINNED_TAG.match(image))
