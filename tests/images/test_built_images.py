"""The images built for real, with buildah on the stand-in base from Debian packages (hack/images.py), and
their entrypoints run for real with runc (no containerd): as user 10001, with a read-only root filesystem
and a tmpfs on /tmp, as the operator's pods run them. The worker image is also imported into a containerd of
the test's own and run there.

Skipped when buildah, debootstrap or runc (and, for the import, containerd and ctr) is missing, or when not
root, unless JOBWORKER_REQUIRE_NODE_IMAGES is set (CI sets it): then it fails instead. A cold cache takes
several minutes (debootstrap, pip); a warm one is a no-op.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import jobworker
from tests.images.hack_modules import load_images_module

images = load_images_module()
REQUIRED_TOOLS = ("buildah", "debootstrap", "runc")

# Run by the image's own python: who runs it, and whether the image's directories can be written.
WRITE_PROBE = """
import errno, os
print("uid", os.getuid(), os.getgid())
for directory in ("/", "/opt/venv", os.getcwd()):
    try:
        open(os.path.join(directory, ".probe"), "w").close()
    except OSError as exc:
        print(directory, errno.errorcode[exc.errno])
    else:
        print(directory, "writable")
with open("/tmp/.probe", "w") as handle:
    handle.write("x")
print("/tmp", "writable")
"""


def _require(tools: tuple[str, ...] = REQUIRED_TOOLS) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    problem = ""
    if missing:
        problem = f"{', '.join(missing)} not installed (apt-get install {' '.join(missing)})"
    elif os.geteuid() != 0:
        problem = "building with buildah and debootstrap here needs root"
    if problem:
        if os.environ.get("JOBWORKER_REQUIRE_NODE_IMAGES"):
            pytest.fail(f"JOBWORKER_REQUIRE_NODE_IMAGES is set, but {problem}", pytrace=False)
        pytest.skip(problem)


@pytest.fixture(scope="module")
def built() -> Any:
    _require()
    try:
        return images.build_images(engine="buildah")
    except images.ImageError as exc:
        pytest.fail(f"building the images failed: {exc}", pytrace=False)


def _config(tag: str) -> dict[str, Any]:
    out = subprocess.run(
        ["buildah", "inspect", "--type", "image", tag], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    config: dict[str, Any] = json.loads(out)["OCIv1"]["config"]
    return config


def run_in_image(tag: str, workdir: Path, args: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``args`` (default: the image's ENTRYPOINT + CMD) in ``tag`` with runc: the image's user, env and
    working directory, a read-only root filesystem, a tmpfs on /tmp, no network."""
    config = _config(tag)
    if args is None:
        args = (config.get("Entrypoint") or []) + (config.get("Cmd") or [])
    uid, _, gid = (config.get("User") or "0").partition(":")
    container = subprocess.run(
        ["buildah", "from", "--pull=never", tag], capture_output=True, text=True, timeout=120, check=True
    ).stdout.strip()
    name = f"jobworker-image-test-{uuid.uuid4().hex[:8]}"
    state = workdir / "runc-state"
    bundle = workdir / name
    try:
        mountpoint = subprocess.run(
            ["buildah", "mount", container], capture_output=True, text=True, timeout=120, check=True
        ).stdout.strip()
        bundle.mkdir(parents=True)
        subprocess.run(["runc", "spec", "--bundle", str(bundle)], capture_output=True, timeout=60, check=True)
        spec = json.loads((bundle / "config.json").read_text())
        spec["root"] = {"path": mountpoint, "readonly": True}
        spec["hostname"] = "jobworker-image-test"
        spec["process"].update(
            terminal=False,
            args=args,
            env=config.get("Env") or [],
            cwd=config.get("WorkingDir") or "/",
            user={"uid": int(uid), "gid": int(gid or 0)},
        )
        spec["mounts"].append(
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]}
        )
        (bundle / "config.json").write_text(json.dumps(spec))
        return subprocess.run(
            ["runc", "--root", str(state), "run", "--bundle", str(bundle), name],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        subprocess.run(["runc", "--root", str(state), "delete", "--force", name], capture_output=True, check=False)
        subprocess.run(["buildah", "umount", container], capture_output=True, timeout=120, check=False)
        subprocess.run(["buildah", "rm", container], capture_output=True, timeout=120, check=False)


def test_worker_image_runs_jobworker_as_10001(built: Any, tmp_path: Path) -> None:
    worker = built.worker
    assert worker.tag == "jobworker:dev" and worker.archive.is_file()
    config = _config(worker.tag)
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["jobworker"]

    default = run_in_image(worker.tag, tmp_path)  # ENTRYPOINT + CMD ["--help"]
    assert default.returncode == 0, default.stdout + default.stderr
    for command in ("worker", "scheduler", "migrate", "serve", "sweep-stale-workers", "cleanup"):
        assert command in default.stdout, f"`jobworker --help` in the image does not list {command}"

    version = run_in_image(worker.tag, tmp_path, ["/opt/venv/bin/jobworker", "--version"])
    assert version.returncode == 0, version.stdout + version.stderr
    assert version.stdout.strip() == f"jobworker {jobworker.__version__}"


def test_operator_image_runs_the_operator_as_10001(built: Any, tmp_path: Path) -> None:
    operator = built.operator
    assert operator.tag == "jobworker-operator:dev" and operator.archive.is_file()
    config = _config(operator.tag)
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["python", "-m", "jobworker_operator"]
    proc = run_in_image(operator.tag, tmp_path, [*config["Entrypoint"], "--help"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "--namespace" in proc.stdout and "--all-namespaces" in proc.stdout


@pytest.mark.parametrize("which", ["worker", "operator"])
def test_images_run_with_a_read_only_root(built: Any, which: str, tmp_path: Path) -> None:
    """What the chart's pods do (readOnlyRootFilesystem, an emptyDir on /tmp): nothing but /tmp is writable,
    and the entrypoints above already ran that way."""
    proc = run_in_image(getattr(built, which).tag, tmp_path, ["python", "-c", WRITE_PROBE])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "uid 10001 10001"
    for line in lines[1:-1]:
        assert line.endswith(" EROFS"), f"{which}: expected a read-only root filesystem, got {line!r}"
    assert lines[-1] == "/tmp writable"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    directory = tmp_path / "image-cache"
    monkeypatch.setenv("JOBWORKER_IMAGE_CACHE", str(directory))
    yield directory


def test_an_image_from_jobworker_dev_is_rebuilt_only_when_its_inputs_change(
    built: Any, cache: Path, tmp_path: Path
) -> None:
    """How users add their tasks (docs/images.md): FROM the runtime image. Files the .dockerignore keeps out
    do not cause a rebuild; a changed task file does; a warm build is a no-op."""
    context = tmp_path / "context"
    (context / "myapp").mkdir(parents=True)
    (context / ".dockerignore").write_text("*\n!myapp/\n**/*.pyc\n")
    (context / "myapp" / "__init__.py").write_text("")
    (context / "myapp" / "tasks.py").write_text("print('tasks v1')\n")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM jobworker:dev\nCOPY myapp/ /app/myapp/\n")
    tag = f"jobworker-image-test-{uuid.uuid4().hex[:8]}:dev"
    try:
        first = images.build(dockerfile, context, tag)
        assert first.rebuilt and first.archive.is_file() and cache in first.archive.parents
        run = run_in_image(tag, tmp_path, ["python", "-m", "myapp.tasks"])
        assert run.stdout.strip() == "tasks v1", run.stdout + run.stderr

        warm = images.build(dockerfile, context, tag)
        assert (warm.rebuilt, warm.archive) == (False, first.archive)

        (context / "myapp" / "tasks.cpython-311.pyc").write_bytes(b"ignored")
        (context / "README").write_text("ignored too")
        assert not images.build(dockerfile, context, tag).rebuilt

        (context / "myapp" / "tasks.py").write_text("print('tasks v2')\n")
        changed = images.build(dockerfile, context, tag)
        assert changed.rebuilt and changed.key != first.key
        assert not first.archive.exists(), "the archive of the replaced build is left in the cache"
        run = run_in_image(tag, tmp_path, ["python", "-m", "myapp.tasks"])
        assert run.stdout.strip() == "tasks v2", run.stdout + run.stderr
    finally:
        subprocess.run(["buildah", "rmi", tag], capture_output=True, timeout=300, check=False)


@pytest.fixture
def containerd(tmp_path: Path) -> Iterator[Path]:
    """A containerd of our own (its own root, state and socket; CRI off), stopped by PID afterwards."""
    _require(("containerd", "ctr"))
    base = tmp_path / "containerd"
    base.mkdir()
    socket = base / "containerd.sock"
    config = base / "config.toml"
    config.write_text(
        "version = 2\n"
        f'root = "{base}/root"\nstate = "{base}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{socket}"\n'
        f'[ttrpc]\n  address = "{socket}.ttrpc"\n'
        '[debug]\n  address = ""\n[metrics]\n  address = ""\n'
        f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{base}/opt"\n'
    )
    # `ctr run` keeps runc's state and the task FIFOs under /run/containerd whatever the config says.
    run_dir_existed = os.path.lexists("/run/containerd")
    with open(base / "containerd.log", "w") as log:
        proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not socket.exists():
            assert proc.poll() is None, (base / "containerd.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "containerd did not create its socket within 60 s"
            time.sleep(0.1)
        yield socket
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        with open("/proc/self/mounts") as mounts:
            still = [line.split()[1] for line in mounts if line.split()[1].startswith(str(base))]
        assert not still, f"mounts left under containerd's root: {still}"
        shutil.rmtree(base, ignore_errors=True)
        if not run_dir_existed:
            shutil.rmtree("/run/containerd", ignore_errors=True)


def test_worker_image_imports_into_containerd_and_runs(built: Any, containerd: Path) -> None:
    """What the real node gets: the archive imported with `ctr images import`, run as its pods run it."""
    names = images.import_into_containerd(built.worker.archive, containerd)
    assert "docker.io/library/jobworker:dev" in names  # what a pod's `image: jobworker:dev` resolves to
    proc = subprocess.run(
        [
            "ctr",
            "--address",
            str(containerd),
            "-n",
            "k8s.io",
            "run",
            "--rm",
            "--read-only",
            "docker.io/library/jobworker:dev",
            f"jobworker-image-test-{uuid.uuid4().hex[:8]}",
            "sh",
            "-c",
            "id -u; jobworker --version",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["10001", "jobworker", jobworker.__version__]


def test_a_base_that_is_not_local_is_an_error_not_a_pull(cache: Path, tmp_path: Path) -> None:
    _require(("buildah",))
    (tmp_path / "context").mkdir()
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:3.11.13-slim-bookworm\n")
    if images.base_image.buildah_has_image("python:3.11.13-slim-bookworm"):
        pytest.skip("this machine's buildah storage holds the official image")
    with pytest.raises(images.ImageError, match="not in buildah's storage; nothing is pulled"):
        images.build(dockerfile, tmp_path / "context", "jobworker-image-test-never:dev", engine="buildah")
