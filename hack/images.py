"""Build jobworker's images without a registry: with docker where an engine runs, else with buildah.

With buildah, every Dockerfile's ``BASE_IMAGE`` is the stand-in base that hack/base_image.py builds from
Debian packages (``localhost/jobworker-base:<key>``), and ``--pull=never`` makes sure nothing is pulled.
With docker, the Dockerfiles' default (``python:3.11.13-slim-bookworm``) is used.

Each image is saved as a docker-archive in the cache (``$JOBWORKER_IMAGE_CACHE``, default
``~/.cache/jobworker-images``), keyed by a hash of its inputs: the files of the build context that the
.dockerignore admits, the Dockerfile, the build arguments and the IDs of local base images. Unchanged inputs
skip the build. A containerd (for example a real node's) takes the archive with ``ctr images import``.

CLI::

    python hack/images.py build                               # jobworker:dev and jobworker-operator:dev
    python hack/images.py build-one -f DOCKERFILE -t TAG [--build-arg K=V]... CONTEXT
    python hack/images.py base                                # the stand-in base (buildah only)
    python hack/images.py import --address SOCKET ARCHIVE...  # into containerd's k8s.io namespace

Library::

    images = build_images()             # images.worker.archive, images.operator.tag, ...
    tasks = build(dockerfile, context, "jobworker-tasks:dev")
    import_into_containerd(tasks.archive, "/path/to/containerd.sock")
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

HACK_DIR = Path(__file__).resolve().parent
REPO_ROOT = HACK_DIR.parent
WORKER_DOCKERFILE = REPO_ROOT / "worker_image" / "Dockerfile"
OPERATOR_DOCKERFILE = REPO_ROOT / "operator" / "Dockerfile"
WORKER_TAG = "jobworker:dev"
OPERATOR_TAG = "jobworker-operator:dev"
INPUTS_LABEL = "dev.jobworker.build-inputs"
ENGINES = ("docker", "buildah")


def _load_base_image_module() -> ModuleType:
    name = "jobworker_hack_base_image"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HACK_DIR / "base_image.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


base_image = _load_base_image_module()
ImageError: type[RuntimeError] = base_image.ImageError


def cache_dir() -> Path:
    return Path(base_image.cache_dir())


def ensure_base_image() -> str:
    """The stand-in base (hack/base_image.py), built once and cached."""
    return str(base_image.ensure_base_image())


def log(message: str) -> None:
    base_image.log(message)


def run(args: Sequence[str], *, timeout: float = 1800) -> str:
    return str(base_image.run(args, timeout=timeout))


@dataclass(frozen=True)
class Image:
    tag: str
    archive: Path  # a docker-archive (`ctr images import`, `docker load`, `buildah pull docker-archive:`)
    key: str  # the hash of the build inputs
    rebuilt: bool  # False when the cache was warm


@dataclass(frozen=True)
class ProjectImages:
    worker: Image
    operator: Image
    base: str | None  # the stand-in base passed as BASE_IMAGE (None with docker: the Dockerfiles' default)

    @property
    def all(self) -> tuple[Image, Image]:
        return (self.worker, self.operator)


# ---------------------------------------------------------------------------------------------- engine


def docker_works() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        proc = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


def select_engine(engine: str | None = None) -> str:
    """``engine``, else $JOBWORKER_IMAGE_ENGINE, else docker when `docker info` succeeds, else buildah."""
    chosen = engine or os.environ.get("JOBWORKER_IMAGE_ENGINE") or None
    if chosen is not None:
        if chosen not in ENGINES:
            raise ImageError(f"JOBWORKER_IMAGE_ENGINE={chosen!r}: use one of {', '.join(ENGINES)}")
        return chosen
    if docker_works():
        return "docker"
    if shutil.which("buildah") is not None:
        return "buildah"
    raise ImageError("no image builder: start a Docker engine, or install buildah (apt-get install buildah)")


# ------------------------------------------------------------------------------------ the build context


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    negated: bool
    literal_prefix: str


def _compile(pattern: str) -> _Pattern:
    negated = pattern.startswith("!")
    body = os.path.normpath(pattern[1:].strip() if negated else pattern).lstrip("/")
    regex = ""
    i = 0
    while i < len(body):
        char = body[i]
        if body.startswith("**/", i):
            regex += "(?:.*/)?"
            i += 3
            continue
        if body.startswith("**", i):
            regex += ".*"
            i += 2
            continue
        if char == "*":
            regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        elif char == "[":
            end = body.find("]", i)
            if end == -1:
                regex += re.escape(char)
            else:
                regex += "[" + body[i + 1 : end].replace("\\", "\\\\") + "]"
                i = end
        else:
            regex += re.escape(char)
        i += 1
    literal = re.split(r"[*?\[]", body, maxsplit=1)[0]
    return _Pattern(re.compile(regex + r"\Z"), negated, literal)


class DockerIgnore:
    """The .dockerignore rules: the last matching pattern wins; a pattern that matches a directory matches
    everything under it; ``!`` re-admits."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.patterns = [_compile(p) for p in (line.strip() for line in lines) if p and not p.startswith("#")]

    @classmethod
    def for_context(cls, context: Path) -> DockerIgnore:
        path = context / ".dockerignore"
        return cls(path.read_text().splitlines() if path.is_file() else [])

    def excluded(self, relative: str) -> bool:
        parts = relative.split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for pattern in self.patterns:
            if any(pattern.regex.match(c) for c in candidates):
                result = not pattern.negated
        return result

    def may_readmit_under(self, directory: str) -> bool:
        for pattern in self.patterns:
            if pattern.negated:
                prefix = pattern.literal_prefix.rstrip("/")
                if not prefix or prefix.startswith(directory + "/") or (directory + "/").startswith(prefix + "/"):
                    return True
        return False


def context_files(context: Path) -> list[str]:
    """The files of ``context`` that its .dockerignore admits (paths relative to it, sorted)."""
    ignore = DockerIgnore.for_context(context)
    found: list[str] = []
    for top, dirs, files in os.walk(context):
        relative_top = os.path.relpath(top, context)
        prefix = "" if relative_top == "." else relative_top + "/"
        kept = []
        for name in sorted(dirs):
            relative = prefix + name
            if ignore.excluded(relative) and not ignore.may_readmit_under(relative):
                continue  # nothing below it can be sent
            kept.append(name)
        dirs[:] = kept
        found += [prefix + name for name in files if not ignore.excluded(prefix + name)]
    return sorted(found)


def _global_args(dockerfile: Path) -> tuple[dict[str, str], list[tuple[str, str | None]]]:
    """The ARG defaults before the first FROM, and every FROM as (image, stage name)."""
    args: dict[str, str] = {}
    froms: list[tuple[str, str | None]] = []
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    for raw in text.splitlines():
        words = raw.split()
        if not words or words[0].startswith("#"):
            continue
        keyword = words[0].upper()
        if keyword == "ARG" and not froms and len(words) > 1:
            name, _, default = words[1].partition("=")
            args[name] = default.strip('"')
        elif keyword == "FROM":
            rest = [w for w in words[1:] if not w.startswith("--")]
            stage = rest[2] if len(rest) >= 3 and rest[1].upper() == "AS" else None
            froms.append((rest[0], stage))
    return args, froms


def base_images(dockerfile: Path, build_args: Mapping[str, str]) -> list[str]:
    """The images the Dockerfile builds FROM (ARGs substituted; stage names and scratch left out)."""
    defaults, froms = _global_args(dockerfile)
    values = {**defaults, **build_args}

    def substitute(match: re.Match[str]) -> str:
        return values.get(match.group(1) or match.group(2), "")

    stages: set[str] = set()
    found: list[str] = []
    for image, stage in froms:
        resolved = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", substitute, image)
        if resolved not in stages and resolved != "scratch" and resolved not in found:
            found.append(resolved)
        if stage:
            stages.add(stage)
    return found


def input_key(
    dockerfile: Path, context: Path, build_args: Mapping[str, str], base_ids: Mapping[str, str | None]
) -> str:
    digest = hashlib.sha256()
    digest.update(b"dockerfile\0" + dockerfile.read_bytes())
    for name, value in sorted(build_args.items()):
        digest.update(f"arg\0{name}\0{value}\0".encode())
    for image, image_id in sorted(base_ids.items()):
        digest.update(f"base\0{image}\0{image_id}\0".encode())
    for relative in context_files(context):
        path = context / relative
        digest.update(f"file\0{relative}\0{path.stat().st_mode & 0o111:o}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------------------------- engine helpers


def _inspect(engine: str, name: str) -> dict[str, object] | None:
    """Image ID and labels of a local image, or None when the engine does not have it."""
    if engine == "docker":
        command = ["docker", "image", "inspect", name]
    else:
        command = ["buildah", "inspect", "--type", "image", name]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        return None
    data = json.loads(proc.stdout)
    if engine == "docker":
        item = data[0]
        return {"id": item["Id"], "labels": (item.get("Config") or {}).get("Labels") or {}}
    config = (data.get("OCIv1") or {}).get("config") or {}
    return {"id": data["FromImageID"], "labels": config.get("Labels") or {}}


def _has_inputs(engine: str, tag: str, key: str) -> bool:
    found = _inspect(engine, tag)
    return found is not None and isinstance(found["labels"], dict) and found["labels"].get(INPUTS_LABEL) == key


def _archive_path(tag: str, key: str) -> Path:
    return cache_dir() / "images" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', tag)}-{key}.tar"


def _save(engine: str, tag: str, archive: Path) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    if engine == "docker":
        run(["docker", "save", "-o", str(partial), tag], timeout=900)
    else:
        run(["buildah", "push", "--quiet", tag, f"docker-archive:{partial}:{tag}"], timeout=900)
    partial.rename(archive)
    prefix = archive.name.rsplit("-", 1)[0] + "-"
    for old in archive.parent.glob(prefix + "*.tar"):
        if old != archive and len(old.name) == len(archive.name):
            old.unlink()  # an older build of the same tag


def _load(engine: str, tag: str, archive: Path) -> None:
    if engine == "docker":
        run(["docker", "load", "-i", str(archive)], timeout=900)
        return
    image_id = run(["buildah", "pull", "--quiet", f"docker-archive:{archive}"], timeout=900).strip().splitlines()[-1]
    run(["buildah", "tag", image_id, tag])


def _remove_if_untagged(engine: str, image_id: str) -> None:
    """Drop the build this one replaced, unless something still names or uses it (then the engine refuses)."""
    if engine == "docker":
        command = ["docker", "image", "rm", image_id]
    else:
        command = ["buildah", "rmi", image_id]
    subprocess.run(command, capture_output=True, timeout=300, check=False)


def _build(engine: str, dockerfile: Path, context: Path, tag: str, build_args: Mapping[str, str], key: str) -> None:
    if engine == "docker":
        command = ["docker", "build"]
    else:
        # chroot isolation: no nested container runtime needed; host network: pip reaches the index;
        # never pull: every base must already be local (the stand-in base, or an image built here).
        # (Without --layers, a failed bud leaves no working container; --force-rm would need --layers.)
        command = ["buildah", "bud", "--isolation", "chroot", "--network", "host", "--pull=never"]
    command += ["--label", f"{INPUTS_LABEL}={key}", "-f", str(dockerfile), "-t", tag]
    for name, value in sorted(build_args.items()):
        command += ["--build-arg", f"{name}={value}"]
    run([*command, str(context)], timeout=1800)


@contextlib.contextmanager
def _staged(dockerfile: Path, context: Path) -> Iterator[tuple[Path, Path]]:
    """A copy of the Dockerfile and of the files the .dockerignore admits: the build reads exactly what was
    hashed, even while someone edits the working tree."""
    root = cache_dir() / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix="context-", dir=root))
    try:
        shutil.copyfile(dockerfile, stage / "Dockerfile")
        for relative in context_files(context):
            target = stage / "context" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(context / relative, target, follow_symlinks=False)
        (stage / "context").mkdir(exist_ok=True)
        yield stage / "Dockerfile", stage / "context"
    finally:
        shutil.rmtree(stage, ignore_errors=True)


# --------------------------------------------------------------------------------------------- the API


def build(
    dockerfile: Path | str,
    context: Path | str,
    tag: str,
    build_args: Mapping[str, str] | None = None,
    *,
    engine: str | None = None,
) -> Image:
    """Build ``dockerfile`` in ``context`` as ``tag`` (a no-op when its inputs are unchanged) and save it as a
    docker-archive in the cache. A base image built here before (e.g. ``FROM jobworker:dev``) is part of the
    inputs, so rebuilding the base rebuilds this image too."""
    chosen = select_engine(engine)
    dockerfile, context = Path(dockerfile).resolve(), Path(context).resolve()
    args = dict(build_args or {})
    if not dockerfile.is_file():
        raise ImageError(f"no Dockerfile at {dockerfile}")
    if not context.is_dir():
        raise ImageError(f"no build context at {context}")
    lock_name = "image-" + re.sub(r"[^A-Za-z0-9_.-]", "_", tag)
    with base_image.locked(lock_name), _staged(dockerfile, context) as (staged_dockerfile, staged_context):
        bases: dict[str, str | None] = {}
        for image in base_images(staged_dockerfile, args):
            found = _inspect(chosen, image)
            if found is None and chosen == "buildah":
                raise ImageError(f"{dockerfile}: base image {image!r} is not in buildah's storage; nothing is pulled")
            bases[image] = str(found["id"]) if found else None
        key = input_key(staged_dockerfile, staged_context, args, bases)
        archive = _archive_path(tag, key)
        in_engine = _has_inputs(chosen, tag, key)
        if in_engine and archive.is_file():
            return Image(tag, archive, key, rebuilt=False)
        if not in_engine and archive.is_file():
            log(f"{tag}: loading the cached build {archive.name}")
            _load(chosen, tag, archive)
            if _has_inputs(chosen, tag, key):
                return Image(tag, archive, key, rebuilt=False)
        if not in_engine:
            previous = _inspect(chosen, tag)
            shown = dockerfile.relative_to(context) if dockerfile.is_relative_to(context) else dockerfile
            log(f"{tag}: building {shown} with {chosen}")
            _build(chosen, staged_dockerfile, staged_context, tag, args, key)
            if previous is not None:
                _remove_if_untagged(chosen, str(previous["id"]))
        _save(chosen, tag, archive)
        return Image(tag, archive, key, rebuilt=not in_engine)


def build_images(*, engine: str | None = None) -> ProjectImages:
    """jobworker:dev and jobworker-operator:dev, from worker_image/Dockerfile and operator/Dockerfile."""
    chosen = select_engine(engine)
    base = ensure_base_image() if chosen == "buildah" else None
    args = {"BASE_IMAGE": base} if base else {}
    worker = build(WORKER_DOCKERFILE, REPO_ROOT, WORKER_TAG, args, engine=chosen)
    operator = build(OPERATOR_DOCKERFILE, REPO_ROOT, OPERATOR_TAG, args, engine=chosen)
    return ProjectImages(worker=worker, operator=operator, base=base)


def import_into_containerd(
    archive: Path | str, address: Path | str, namespace: str = "k8s.io", *, ctr: str = "ctr"
) -> list[str]:
    """Import a docker-archive into the containerd listening on ``address``; returns the image names."""
    output = run([ctr, "--address", str(address), "-n", namespace, "images", "import", str(archive)], timeout=900)
    return re.findall(r"^unpacking (\S+) ", output, flags=re.MULTILINE)


def _iter_build_args(values: Sequence[str]) -> Iterator[tuple[str, str]]:
    for value in values:
        name, eq, arg = value.partition("=")
        if not eq or not name:
            raise ImageError(f"--build-arg {value!r}: use NAME=VALUE")
        yield name, arg


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--engine", choices=ENGINES, help="default: docker if `docker info` works, else buildah")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build jobworker:dev and jobworker-operator:dev")
    one = commands.add_parser("build-one", help="build one Dockerfile")
    one.add_argument("-f", "--file", required=True, type=Path)
    one.add_argument("-t", "--tag", required=True)
    one.add_argument("--build-arg", action="append", default=[])
    one.add_argument("context", type=Path)
    commands.add_parser("base", help="build the stand-in base image (buildah)")
    imp = commands.add_parser("import", help="import docker-archives into a containerd")
    imp.add_argument("--address", required=True, help="containerd's socket")
    imp.add_argument("--namespace", default="k8s.io")
    imp.add_argument("archives", nargs="+", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            images = build_images(engine=args.engine)
            for image in images.all:
                state = "built" if image.rebuilt else "cached"
                print(f"{image.tag} {image.archive} ({state})")
        elif args.command == "build-one":
            image = build(args.file, args.context, args.tag, dict(_iter_build_args(args.build_arg)), engine=args.engine)
            print(f"{image.tag} {image.archive} ({'built' if image.rebuilt else 'cached'})")
        elif args.command == "base":
            print(ensure_base_image())
        else:
            for archive in args.archives:
                for name in import_into_containerd(archive, args.address, args.namespace):
                    print(name)
    except ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
