"""A stand-in for the ``python:3.11.13-slim-bookworm`` base image, built from Debian packages with no
container registry: debootstrap a minimal bookworm root filesystem with Debian's python3, commit it with
buildah as ``localhost/jobworker-base:<key>``.

The key is a hash of everything that goes into the image (this file, the suite, the package list, the
architecture and this machine's CA bundle), so a warm run is a no-op. The Debian mirror is read from this
machine's apt sources at run time (``JOBWORKER_DEBIAN_MIRROR`` overrides it) and never stored in the repo.
The image is also saved as a docker-archive in the cache directory, so a wiped container storage is
restored from the file instead of running debootstrap again (about 2 minutes).

CLI::

    python hack/base_image.py          # builds the base if needed, prints its name
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
IMAGE_REPOSITORY = "localhost/jobworker-base"
APT_DIR = Path("/etc/apt")
# The machine's CA bundle goes into the image so that pip, in a Dockerfile's builder stage, trusts the same
# certificate authorities as this machine (Debian's pip reads this file).
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGE_ENV = ("LANG=C.UTF-8", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")


class ImageError(RuntimeError):
    """An image could not be built, saved or loaded."""


def log(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """Where images are cached across runs (outside the repository)."""
    return Path(os.environ.get("JOBWORKER_IMAGE_CACHE") or Path.home() / ".cache" / "jobworker-images")


def run(args: Sequence[str], *, timeout: float = 1800, capture: bool = True) -> str:
    """Run a command; raise ImageError with the tail of its output when it fails. Returns stdout."""
    try:
        proc = subprocess.run(
            list(args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if capture else None,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ImageError(f"{args[0]} is not installed ({exc})") from exc
    if proc.returncode != 0:
        tail = "\n".join(((proc.stderr or "") + (proc.stdout or "")).splitlines()[-30:])
        raise ImageError(f"`{' '.join(args[:3])} ...` failed with exit code {proc.returncode}:\n{tail}")
    return proc.stdout


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """An exclusive flock on ``<cache>/<name>.lock``: concurrent builds of the same thing wait, then reuse."""
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------ apt sources


@dataclass(frozen=True)
class AptSource:
    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    origin: Path


def _one_line_sources(path: Path, text: str) -> list[AptSource]:
    found = []
    for raw in text.splitlines():
        line = re.sub(r"\[[^\]]*\]", " ", raw.split("#", 1)[0]).split()
        if len(line) >= 3 and line[0] in {"deb", "deb-src"}:
            found.append(AptSource((line[0],), (line[1],), (line[2],), path))
    return found


def _deb822_sources(path: Path, text: str) -> list[AptSource]:
    found = []
    for paragraph in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in paragraph.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if fields.get("types") and fields.get("uris") and fields.get("suites"):
            found.append(
                AptSource(
                    tuple(fields["types"].split()), tuple(fields["uris"].split()), tuple(fields["suites"].split()), path
                )
            )
    return found


def apt_sources(apt_dir: Path = APT_DIR) -> list[AptSource]:
    """The entries of sources.list and sources.list.d/*.list / *.sources, in apt's reading order."""
    files = [apt_dir / "sources.list"]
    listing = apt_dir / "sources.list.d"
    if listing.is_dir():
        files += sorted(p for p in listing.iterdir() if p.suffix in {".list", ".sources"})
    found: list[AptSource] = []
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        found += _deb822_sources(path, text) if path.suffix == ".sources" else _one_line_sources(path, text)
    return found


def debian_mirror(suite: str = SUITE, apt_dir: Path = APT_DIR) -> str:
    """The mirror this machine's apt uses for ``suite``: an entry naming the suite itself, else an entry with
    the Debian archive layout (a URI ending in /debian, which serves every suite)."""
    override = os.environ.get("JOBWORKER_DEBIAN_MIRROR")
    if override:
        return override
    sources = [s for s in apt_sources(apt_dir) if "deb" in s.types]
    for source in sources:
        if suite in source.suites:
            return source.uris[0]
    for source in sources:
        for uri in source.uris:
            if uri.rstrip("/").endswith("/debian"):
                return uri
    raise ImageError(
        f"no Debian mirror for {suite!r} in {apt_dir}/sources.list or {apt_dir}/sources.list.d/ "
        "(.list or .sources); add one, or set JOBWORKER_DEBIAN_MIRROR=<mirror URL>"
    )


# ------------------------------------------------------------------------------------------- the image


def base_key() -> str:
    digest = hashlib.sha256()
    digest.update(Path(__file__).read_bytes())
    digest.update(f"\0{SUITE}\0{' '.join(PACKAGES)}\0{os.uname().machine}\0".encode())
    if HOST_CA_BUNDLE.is_file():
        digest.update(HOST_CA_BUNDLE.read_bytes())
    return digest.hexdigest()[:16]


def base_image_name(key: str | None = None) -> str:
    return f"{IMAGE_REPOSITORY}:{key or base_key()}"


def buildah_has_image(name: str) -> bool:
    proc = subprocess.run(
        ["buildah", "inspect", "--type", "image", name], capture_output=True, text=True, timeout=120, check=False
    )
    return proc.returncode == 0


def _mounts_under(directory: Path) -> list[str]:
    prefix = str(directory.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]


def _remove_tree(directory: Path) -> None:
    if not directory.exists():
        return
    leftover = _mounts_under(directory)
    if leftover:  # never delete through a bind mount (debootstrap mounts /proc and /sys while it works)
        raise ImageError(f"not removing {directory}: still mounted: {', '.join(leftover)}")
    shutil.rmtree(directory)


def _debootstrap(rootfs: Path) -> None:
    mirror = debian_mirror()
    log(f"debootstrap {SUITE} ({', '.join(PACKAGES)}) into {rootfs} (about 2 minutes)")
    run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(rootfs),
            mirror,
        ],
        timeout=1800,
    )
    # `python` as in the official image (Dockerfiles run `python -m venv`).
    (rootfs / "usr/bin/python").symlink_to("python3")
    if HOST_CA_BUNDLE.is_file():
        shutil.copyfile(HOST_CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
    # Downloaded packages and indexes (as the official image, which keeps no apt lists); device nodes and
    # the host's name and resolver, which the container runtime provides.
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*", "dev/*"):
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    for name in ("etc/resolv.conf", "etc/hostname"):
        (rootfs / name).unlink(missing_ok=True)


def _commit(rootfs: Path, name: str) -> None:
    container = run(["buildah", "from", "scratch"]).strip()
    try:
        mountpoint = run(["buildah", "mount", container]).strip()
        run(["cp", "-a", f"{rootfs}/.", mountpoint + "/"], timeout=600)
        run(["buildah", "umount", container])
        config = ["buildah", "config", "--cmd", "python3"]
        for env in IMAGE_ENV:
            config += ["--env", env]
        config += ["--label", f"org.opencontainers.image.description=jobworker stand-in base: Debian {SUITE} python3"]
        run([*config, container])
        run(["buildah", "commit", "--quiet", container, name], timeout=600)
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True, timeout=120, check=False)


def ensure_base_image() -> str:
    """Build (or restore from the cache) the stand-in base image and return its name. A no-op when warm."""
    key = base_key()
    name = base_image_name(key)
    archive = cache_dir() / "base" / f"jobworker-base-{key}.tar"
    with locked("base"):
        if buildah_has_image(name):
            return name
        if archive.is_file():
            log(f"restoring {name} from {archive}")
            run(["buildah", "pull", "--quiet", f"docker-archive:{archive}"], timeout=600)
            if buildah_has_image(name):
                return name
        for tool in ("debootstrap", "buildah"):
            if shutil.which(tool) is None:
                raise ImageError(f"{tool} is not installed: apt-get install {tool}")
        rootfs = cache_dir() / "tmp" / f"base-{key}-{os.getpid()}"
        _remove_tree(rootfs)
        rootfs.mkdir(parents=True)
        try:
            _debootstrap(rootfs)
            _commit(rootfs, name)
        finally:
            _remove_tree(rootfs)
        archive.parent.mkdir(parents=True, exist_ok=True)
        partial = archive.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        run(["buildah", "push", "--quiet", name, f"docker-archive:{partial}:{name}"], timeout=600)
        partial.rename(archive)
        for old in archive.parent.glob("jobworker-base-*.tar"):
            if old != archive:
                old.unlink()
        log(f"built {name}")
        return name


def main(argv: Sequence[str] | None = None) -> int:
    del argv
    try:
        print(ensure_base_image())
    except ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
