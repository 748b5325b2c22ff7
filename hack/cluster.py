"""A real local Kubernetes control plane for the e2e tests, without Docker.

Runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok as local processes on
127.0.0.1 and registers one fake node (``kwok-node-0``) that kwok keeps Ready and whose pods kwok
"runs" according to hack/kwok-stages.yaml. Binaries come from hack/build-k8s.sh.

CLI::

    python hack/cluster.py up   --dir DIR   # prints the kubeconfig path
    python hack/cluster.py down --dir DIR

Library (used by tests/e2e/conftest.py)::

    cluster = LocalCluster(workdir).start()
    ... cluster.kubeconfig ...
    cluster.stop()
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import datetime as dt
import ipaddress
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

K8S_VERSION = os.environ.get("JOBWORKER_K8S_VERSION", "v1.33.13")
HACK_DIR = Path(__file__).resolve().parent
BUILD_SCRIPT = HACK_DIR / "build-k8s.sh"
STAGES_FILE = HACK_DIR / "kwok-stages.yaml"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "helm")
NODE_BINARIES = ("kubelet", "kube-proxy", "pause")

NODE_NAME = "kwok-node-0"
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
# kwok's fake pod IPs: the upper half of the cluster range, so they never collide with the real node's
# pods (10.244.0.0/24, hack/node.py), and the real node's guard chain keeps them from leaving the host.
POD_CIDR = "10.244.128.1/17"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
STATE_FILE = "state.json"
START_ATTEMPTS = 3


class ClusterError(RuntimeError):
    """The control plane could not be started (or stopped)."""


def cache_root() -> Path:
    return Path(os.environ.get("JOBWORKER_K8S_CACHE") or Path.home() / ".cache" / "jobworker-k8s")


def default_bin_dir() -> Path:
    return cache_root() / K8S_VERSION / "bin"


def missing_binaries(bin_dir: Path, *, real_node: bool = False) -> list[str]:
    names = BINARIES + (NODE_BINARIES if real_node else ())
    return [name for name in names if not os.access(bin_dir / name, os.X_OK)]


def load_hack_module(file: str) -> Any:
    """A sibling module of hack/ (node.py, images.py), loaded by path as the tests load this one."""
    import importlib.util

    name = f"jobworker_hack_{Path(file).stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HACK_DIR / file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def load_node_module() -> Any:
    """hack/node.py: the real kubelet node."""
    return load_hack_module("node.py")


def build_binaries(timeout: float = 3600, *, show_progress: bool = False) -> Path:
    """Run hack/build-k8s.sh (a no-op when the cache is complete) and return the bin directory.

    With ``show_progress`` the build log goes to our stderr; otherwise it is captured and only the
    tail is shown on failure.
    """
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        stdout=subprocess.PIPE,
        stderr=None if show_progress else subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or "").splitlines()[-40:])
        raise ClusterError(f"{BUILD_SCRIPT} failed with exit code {proc.returncode}:\n{tail}")
    return Path(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------- helpers


def log(message: str) -> None:
    print(f"[cluster] {message}", file=sys.stderr, flush=True)


def poll(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    interval: float = 0.25,
    alive: Callable[[], None] | None = None,
) -> None:
    """Call ``check`` until it returns True; raise ClusterError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        if alive is not None:
            alive()
        try:
            if check():
                return
            last_error = None
        except (OSError, ValueError, KeyError, urllib.error.URLError) as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (all sockets are held until every port is chosen)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _set_parent_death_signal() -> None:
    """preexec_fn: the child gets SIGTERM when the starting process dies (so a killed pytest leaks
    nothing)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


# ------------------------------------------------------------------------------------------------- PKI


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path

    @classmethod
    def in_dir(cls, directory: Path) -> Pki:
        return cls(
            ca_cert=directory / "ca.crt",
            ca_key=directory / "ca.key",
            serving_cert=directory / "apiserver.crt",
            serving_key=directory / "apiserver.key",
            admin_cert=directory / "admin.crt",
            admin_key=directory / "admin.key",
            sa_key=directory / "sa.key",
            sa_pub=directory / "sa.pub",
        )


SERVING_DNS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
SERVING_IPS = ("127.0.0.1", "10.0.0.1", "10.244.0.1")  # loopback, the `kubernetes` Service, the node bridge


def make_pki(directory: Path) -> Pki:
    """CA, apiserver serving cert, admin client cert (O=system:masters), service-account key pair."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki.in_dir(directory)
    try:
        import cryptography  # noqa: F401
    except ImportError:
        _make_pki_openssl(pki, directory)
    else:
        _make_pki_cryptography(pki)
    for key in (pki.ca_key, pki.serving_key, pki.admin_key, pki.sa_key):
        key.chmod(0o600)
    return pki


def _make_pki_cryptography(pki: Pki) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def new_key() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = new_key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jobworker-local-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pki.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    write_key(pki.ca_key, ca_key)

    def leaf(
        cert_path: Path,
        key_path: Path,
        name: x509.Name,
        usage: x509.ObjectIdentifier,
        san: x509.SubjectAlternativeName | None,
    ) -> None:
        key = new_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if san is not None:
            builder = builder.add_extension(san, critical=False)
        cert_path.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
        write_key(key_path, key)

    san = x509.SubjectAlternativeName(
        [x509.DNSName(name) for name in SERVING_DNS] + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVING_IPS]
    )
    leaf(
        pki.serving_cert,
        pki.serving_key,
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        ExtendedKeyUsageOID.SERVER_AUTH,
        san,
    )
    leaf(
        pki.admin_cert,
        pki.admin_key,
        x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                x509.NameAttribute(NameOID.COMMON_NAME, "jobworker-admin"),
            ]
        ),
        ExtendedKeyUsageOID.CLIENT_AUTH,
        None,
    )

    sa_key = new_key()
    write_key(pki.sa_key, sa_key)
    pki.sa_pub.write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _make_pki_openssl(pki: Pki, directory: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ClusterError("neither the Python 'cryptography' package nor the openssl CLI is available")

    def run(*args: str) -> None:
        proc = subprocess.run([openssl, *args], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ClusterError(f"openssl {' '.join(args[:2])} failed: {proc.stderr.strip()}")

    # A self-contained config so that the system openssl.cnf does not matter.
    config = directory / "openssl.cnf"
    alt_names = "\n".join(
        [f"DNS.{i} = {name}" for i, name in enumerate(SERVING_DNS, 1)]
        + [f"IP.{i} = {ip}" for i, ip in enumerate(SERVING_IPS, 1)]
    )
    config.write_text(
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n"
        "[ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, digitalSignature, keyCertSign, cRLSign\n"
        "subjectKeyIdentifier = hash\n"
        "[server]\nbasicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n"
        "authorityKeyIdentifier = keyid\nsubjectAltName = @alt_names\n"
        "[client]\nbasicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\nextendedKeyUsage = clientAuth\n"
        "authorityKeyIdentifier = keyid\n"
        f"[alt_names]\n{alt_names}\n"
    )

    def genkey(path: Path) -> None:
        run("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path))

    def serial() -> str:
        return f"0x{secrets.randbits(63) | 1:x}"

    genkey(pki.ca_key)
    run(
        "req",
        "-config",
        str(config),
        "-new",
        "-x509",
        "-key",
        str(pki.ca_key),
        "-out",
        str(pki.ca_cert),
        "-subj",
        "/CN=jobworker-local-ca",
        "-days",
        "3650",
        "-sha256",
        "-set_serial",
        serial(),
        "-extensions",
        "ca",
    )
    for cert, key, subject, section in (
        (pki.serving_cert, pki.serving_key, "/CN=kube-apiserver", "server"),
        (pki.admin_cert, pki.admin_key, "/O=system:masters/CN=jobworker-admin", "client"),
    ):
        genkey(key)
        csr = directory / f"{cert.stem}.csr"
        run("req", "-config", str(config), "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
        run(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(pki.ca_cert),
            "-CAkey",
            str(pki.ca_key),
            "-set_serial",
            serial(),
            "-days",
            "365",
            "-sha256",
            "-extfile",
            str(config),
            "-extensions",
            section,
            "-out",
            str(cert),
        )
        csr.unlink()
    genkey(pki.sa_key)
    run("pkey", "-in", str(pki.sa_key), "-pubout", "-out", str(pki.sa_pub))


def write_kubeconfig(path: Path, server: str, pki: Pki, context: str = "jobworker-local") -> None:
    """An admin kubeconfig with the CA and client certificate embedded (JSON is valid YAML)."""

    def b64(file: Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server, "certificate-authority-data": b64(pki.ca_cert)}}],
        "users": [
            {
                "name": f"{context}-admin",
                "user": {"client-certificate-data": b64(pki.admin_cert), "client-key-data": b64(pki.admin_key)},
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": context, "user": f"{context}-admin"}}],
        "current-context": context,
        "preferences": {},
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)


# ------------------------------------------------------------------------------------------- processes


@dataclass
class Component:
    name: str
    pid: int
    binary: str
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return _pid_alive(self.pid)

    def owned(self, workdir: Path) -> bool:
        """Is ``pid`` still this component (guards against PID reuse when stopping from state.json)?"""
        if self.popen is not None:
            return True
        args = _cmdline(self.pid)
        return bool(args) and args[0] == self.binary and any(str(workdir) in arg for arg in args)

    def stop(self, workdir: Path, timeout: float = 20) -> None:
        if not self.alive() or not self.owned(workdir):
            if self.popen is not None:
                self.popen.wait()
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        if self._wait(timeout):
            return
        log(f"{self.name} (pid {self.pid}) ignored SIGTERM for {timeout:.0f}s; sending SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self._wait(10)

    def _wait(self, timeout: float) -> bool:
        if self.popen is not None:
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _pid_alive(self.pid):
                return True
            time.sleep(0.1)
        return False


class LocalCluster:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok on 127.0.0.1.

    With ``real_node`` also a real kubelet node (hack/node.py): the API server then binds the node's bridge
    address instead of 127.0.0.1, so that pods reach it through the ``kubernetes`` Service. ``taint_node``
    keeps pods off the real node unless they tolerate ``jobworker.dev/node=real``; ``kwok_node=False``
    registers no fake node, so every pod runs for real (``make cluster-up``).
    """

    def __init__(
        self,
        workdir: Path | str,
        bin_dir: Path | str | None = None,
        *,
        detach: bool = False,
        timeout: float = 180,
        real_node: bool = False,
        taint_node: bool = True,
        kwok_node: bool = True,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.bin_dir = (Path(bin_dir) if bin_dir is not None else default_bin_dir()).resolve()
        self.detach = detach  # True for the CLI: the processes outlive this Python process
        self.timeout = timeout
        self.kubeconfig = self.workdir / "kubeconfig"
        self.pki = Pki.in_dir(self.workdir / "pki")
        self.log_dir = self.workdir / "logs"
        self.components: list[Component] = []
        self.server = ""
        self.ports: dict[str, int] = {}
        self.real_node = real_node
        self.taint_node = taint_node
        self.kwok_node = kwok_node
        self.node: Any = None  # hack/node.py RealNode while running
        self.bind_address = "127.0.0.1"

    # --------------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalCluster:
        missing = missing_binaries(self.bin_dir, real_node=self.real_node)
        if missing:
            raise ClusterError(f"missing binaries in {self.bin_dir}: {', '.join(missing)} (run hack/build-k8s.sh)")
        self._refuse_if_running()
        started = time.monotonic()
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                self._prepare_workdir()
                self._start_all()
                break
            except ClusterError as exc:
                self.stop()
                # The free ports are only reserved until we hand them out; another process can win
                # the race for one of them before our component binds it.
                if "address already in use" not in str(exc) or attempt == START_ATTEMPTS:
                    raise
                log(f"a port was taken before we could bind it; retrying ({exc})")
            except BaseException:
                self.stop()
                raise
        log(f"control plane ready in {time.monotonic() - started:.1f}s; logs in {self.log_dir}")
        return self

    def stop(self) -> None:
        """Stop every recorded process by PID, newest first (the real node first, with its host changes)."""
        if self.real_node:
            try:
                load_node_module().cleanup(self.workdir / "node")
            except Exception as exc:  # keep stopping the others
                log(f"failed to clean up the real node: {exc}")
            self.node = None
        for component in reversed(self.components):
            try:
                component.stop(self.workdir)
            except Exception as exc:  # keep stopping the others
                log(f"failed to stop {component.name} (pid {component.pid}): {exc}")
        self.components = []
        (self.workdir / STATE_FILE).unlink(missing_ok=True)

    @classmethod
    def from_state(cls, workdir: Path | str) -> LocalCluster:
        """The cluster recorded in ``workdir/state.json`` by a (detached) ``up``."""
        cluster = cls(workdir)
        state_file = cluster.workdir / STATE_FILE
        if not state_file.exists():
            return cluster
        state = json.loads(state_file.read_text())
        cluster.server = state.get("server", "")
        cluster.ports = state.get("ports", {})
        cluster.real_node = bool(state.get("real_node", False))
        cluster.components = [
            Component(name=c["name"], pid=int(c["pid"]), binary=c["binary"], log=Path(c["log"]))
            for c in state.get("components", [])
        ]
        return cluster

    # ------------------------------------------------------------------------------------ internals

    def _refuse_if_running(self) -> None:
        existing = LocalCluster.from_state(self.workdir)
        running = [c for c in existing.components if c.alive() and c.owned(self.workdir)]
        if running:
            names = ", ".join(f"{c.name}={c.pid}" for c in running)
            raise ClusterError(f"a cluster is already running in {self.workdir} ({names}); stop it first")

    def _prepare_workdir(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for sub in ("pki", "etcd", "logs", "certs"):
            shutil.rmtree(self.workdir / sub, ignore_errors=True)
        for sub in ("logs", "certs"):
            (self.workdir / sub).mkdir()
        (self.workdir / "etcd").mkdir(mode=0o700)

    def _start_all(self) -> None:
        names = ("etcd_client", "etcd_peer", "apiserver", "controller_manager", "scheduler")
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))
        make_pki(self.workdir / "pki")
        if self.real_node:
            node_lib = load_node_module()
            self.node = node_lib.RealNode(
                self.workdir / "node",
                self.bin_dir,
                server="",
                kubeconfig=self.kubeconfig,
                ca_cert=self.pki.ca_cert,
                spawn=lambda name, args, binary: self._spawn(name, args, binary=binary),
                api_get=self.api_get,
                taint=self.taint_node,
                timeout=self.timeout,
            )
            self.node.prepare_host()
            self.bind_address = node_lib.GATEWAY
        self.server = f"https://{self.bind_address}:{self.ports['apiserver']}"
        write_kubeconfig(self.kubeconfig, self.server, self.pki)

        self._start_etcd()
        self._start_apiserver()
        self._start_controller_manager()
        self._start_scheduler()
        self._start_kwok()
        if self.kwok_node:
            self._create_node()
            poll(f"node {NODE_NAME} to become Ready", self._node_ready, self.timeout, alive=self._check_alive)
        if self.node is not None:
            self.node.server = self.server
            self.node.start()
        poll(
            "the default ServiceAccount in namespace default",
            lambda: self.api_get("/api/v1/namespaces/default/serviceaccounts/default") is not None,
            self.timeout,
            alive=self._check_alive,
        )

    def _spawn(self, name: str, args: Sequence[str], *, binary: str | None = None) -> Component:
        binary = binary or str(self.bin_dir / name)
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as log_file:
            popen = subprocess.Popen(
                [binary, *args],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=self.detach,
                preexec_fn=None if self.detach or sys.platform != "linux" else _set_parent_death_signal,
            )
        component = Component(
            name=name, pid=popen.pid, binary=binary, log=log_path, popen=None if self.detach else popen
        )
        self.components.append(component)
        self._write_state()
        log(f"started {name} (pid {popen.pid})")
        return component

    def _write_state(self) -> None:
        state = {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "real_node": self.real_node,
            "ports": self.ports,
            "components": [
                {"name": c.name, "pid": c.pid, "binary": c.binary, "log": str(c.log)} for c in self.components
            ],
        }
        tmp = self.workdir / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.workdir / STATE_FILE)

    def _check_alive(self) -> None:
        for component in self.components:
            if not component.alive():
                raise ClusterError(f"{component.name} exited during startup; last log lines:\n{_tail(component.log)}")

    def _start_etcd(self) -> None:
        client = f"http://127.0.0.1:{self.ports['etcd_client']}"
        peer = f"http://127.0.0.1:{self.ports['etcd_peer']}"
        self._spawn(
            "etcd",
            [
                "--name=jobworker",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=jobworker={peer}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        poll(
            "etcd /health",
            lambda: _http_json(f"{client}/health").get("health") == "true",
            self.timeout,
            alive=self._check_alive,
        )

    def _start_apiserver(self) -> None:
        pki = self.pki
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers=http://127.0.0.1:{self.ports['etcd_client']}",
                f"--bind-address={self.bind_address}",
                f"--advertise-address={self.bind_address}",
                f"--secure-port={self.ports['apiserver']}",
                f"--cert-dir={self.workdir / 'certs' / 'apiserver'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                # Published in kube-system/extension-apiserver-authentication, where the delegated
                # authentication of controller-manager and scheduler looks for it (else they log an
                # error every second). No cert with this CN is ever issued.
                f"--requestheader-client-ca-file={pki.ca_cert}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--service-account-issuer={SA_ISSUER}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                *self._node_apiserver_args(),
                "--profiling=false",
                "--v=1",
            ],
        )
        poll(
            "kube-apiserver /readyz",
            lambda: self._api_text("/readyz") == "ok",
            self.timeout,
            interval=0.5,
            alive=self._check_alive,
        )

    def _node_apiserver_args(self) -> list[str]:
        if not self.real_node:
            # Nothing runs in a pod: the `kubernetes` Service needs no endpoints.
            return ["--endpoint-reconciler-type=none"]
        # Pods reach the API server through the `kubernetes` Service, whose endpoint the default
        # reconciler keeps at the advertised (bridge) address. Logs and exec dial the kubelet by its
        # InternalIP: the node's name does not resolve here.
        return [
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--kubelet-client-certificate={self.pki.admin_cert}",
            f"--kubelet-client-key={self.pki.admin_key}",
        ]

    def _component_kubeconfig_args(self) -> list[str]:
        return [
            f"--{flag}={self.kubeconfig}"
            for flag in ("kubeconfig", "authentication-kubeconfig", "authorization-kubeconfig")
        ]

    def _start_controller_manager(self) -> None:
        port = self.ports["controller_manager"]
        self._spawn(
            "kube-controller-manager",
            [
                *self._component_kubeconfig_args(),
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'certs' / 'controller-manager'}",
                f"--service-account-private-key-file={self.pki.sa_key}",
                f"--root-ca-file={self.pki.ca_cert}",
                f"--cluster-signing-cert-file={self.pki.ca_cert}",
                f"--cluster-signing-key-file={self.pki.ca_key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--controllers=*",
                "--profiling=false",
                "--v=1",
            ],
        )
        poll(
            "kube-controller-manager /healthz",
            lambda: _https_text(port, "/healthz") == "ok",
            self.timeout,
            interval=0.5,
            alive=self._check_alive,
        )

    def _start_scheduler(self) -> None:
        port = self.ports["scheduler"]
        self._spawn(
            "kube-scheduler",
            [
                *self._component_kubeconfig_args(),
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'certs' / 'scheduler'}",
                "--profiling=false",
                "--v=1",
            ],
        )
        poll(
            "kube-scheduler /healthz",
            lambda: _https_text(port, "/healthz") == "ok",
            self.timeout,
            interval=0.5,
            alive=self._check_alive,
        )

    def _start_kwok(self) -> None:
        key, value = KWOK_NODE_ANNOTATION
        self._spawn(
            "kwok",
            [
                f"--kubeconfig={self.kubeconfig}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={key}={value}",
                "--node-lease-duration-seconds=40",
                f"--cidr={POD_CIDR}",
                f"--config={STAGES_FILE}",
            ],
        )

    def _create_node(self) -> None:
        key, value = KWOK_NODE_ANNOTATION
        resources = {"cpu": "32", "memory": "256Gi", "pods": "500"}
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE_NAME,
                "annotations": {key: value, "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "type": "kwok",
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/hostname": NODE_NAME,
                },
            },
            "spec": {},
            "status": {"allocatable": resources, "capacity": resources},
        }
        self.api_request("POST", "/api/v1/nodes", node)

    def _node_ready(self) -> bool:
        node = self.api_get(f"/api/v1/nodes/{NODE_NAME}")
        if node is None:
            return False
        conditions = node.get("status", {}).get("conditions", [])
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        # The node lifecycle controller taints a new node not-ready until it has seen it Ready.
        return ready and not node.get("spec", {}).get("taints")

    # ------------------------------------------------------------------------------------ API access

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return context

    def _api_text(self, path: str) -> str:
        with urllib.request.urlopen(f"{self.server}{path}", context=self._ssl_context(), timeout=5) as resp:
            return str(resp.read().decode())

    def api_request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A request as cluster admin; raises urllib.error.HTTPError on non-2xx."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.server}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        with urllib.request.urlopen(request, context=self._ssl_context(), timeout=10) as resp:
            result: dict[str, Any] = json.loads(resp.read() or b"{}")
            return result

    def api_get(self, path: str) -> dict[str, Any] | None:
        """GET as cluster admin; None when the object does not exist."""
        try:
            return self.api_request("GET", path)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                exc.close()
                return None
            raise


def _http_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        result: dict[str, Any] = json.loads(resp.read())
        return result


def _https_text(port: int, path: str) -> str:
    """Health endpoints of controller-manager/scheduler (self-signed serving certs; loopback only)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(f"https://127.0.0.1:{port}{path}", context=context, timeout=5) as resp:
        return str(resp.read().decode())


# ------------------------------------------------------------------------------------------------- CLI


DEV_POSTGRES_DIR = "postgres"


def start_dev_postgres(workdir: Path) -> str:
    """A throwaway PostgreSQL on the node bridge for `make cluster-up` users; returns its URL."""
    from jobworker.devdb import EphemeralPostgres

    node_lib = load_node_module()
    server = EphemeralPostgres(
        workdir / DEV_POSTGRES_DIR, listen=(node_lib.GATEWAY,), trust_networks=(node_lib.NODE_SUBNET,)
    ).start()
    (workdir / DEV_POSTGRES_DIR / "port").write_text(f"{server.port}\n")
    return str(server.url)


def stop_dev_postgres(workdir: Path) -> None:
    directory = workdir / DEV_POSTGRES_DIR
    if not (directory / "port").exists():
        return
    from jobworker.devdb import EphemeralPostgres

    port = int((directory / "port").read_text())
    try:
        EphemeralPostgres(directory, port=port).stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def load_images_module() -> Any:
    """hack/images.py: builds the images with docker or buildah, cached by their inputs."""
    return load_hack_module("images.py")


EXAMPLE_TAG = "jobworker-example:dev"


def build_all_images() -> list[Path]:
    """Archives of jobworker:dev, jobworker-operator:dev and the example app (examples/Dockerfile, FROM the
    first), built if their inputs changed."""
    images = load_images_module()
    project = images.build_images()
    example = images.build(
        HACK_DIR.parent / "examples" / "Dockerfile",
        HACK_DIR.parent / "examples",
        EXAMPLE_TAG,
        {"BASE_IMAGE": local_image_ref(project.worker.tag)},
    )
    return [project.worker.archive, project.operator.archive, example.archive]


def local_image_ref(tag: str) -> str:
    """How a FROM names an image this machine built: buildah keeps short names under localhost/."""
    images = load_images_module()
    return tag if images.select_engine() == "docker" else f"localhost/{tag}"


def import_images(cluster: LocalCluster) -> None:
    """Build (if missing) and import the jobworker images into the real node, so that nothing is pulled."""
    for archive in build_all_images():
        log(f"importing {archive.name} into the node's containerd")
        cluster.node.import_image(archive)


def _default_dir() -> Path:
    return Path(os.environ.get("TMPDIR") or tempfile.gettempdir()) / "jobworker-cluster"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the control plane in the background")
    up.add_argument("--dir", type=Path, default=_default_dir(), help="state directory (default: %(default)s)")
    up.add_argument(
        "--bin-dir", type=Path, default=None, help="binaries (default: the hack/build-k8s.sh cache for this version)"
    )
    up.add_argument("--build", action="store_true", help="run hack/build-k8s.sh first if binaries are missing")
    up.add_argument("--timeout", type=float, default=180, help="seconds to wait for each component")
    up.add_argument(
        "--real-node",
        choices=("auto", "yes", "no"),
        default="auto",
        help="a real kubelet node that runs the pods (auto: when root with containerd, runc and the CNI plugins)",
    )
    up.add_argument(
        "--kwok-node", action="store_true", help="also register the fake kwok node (always on without a real node)"
    )
    up.add_argument(
        "--no-images", action="store_true", help="do not build and import the jobworker images into the real node"
    )
    down = sub.add_parser("down", help="stop the control plane started by 'up'")
    down.add_argument("--dir", type=Path, default=_default_dir(), help="state directory (default: %(default)s)")
    sub.add_parser("images", help="build jobworker:dev, jobworker-operator:dev and jobworker-example:dev")
    status = sub.add_parser("status", help="show the recorded processes")
    status.add_argument("--dir", type=Path, default=_default_dir(), help="state directory (default: %(default)s)")
    args = parser.parse_args(argv)

    try:
        if args.command == "up":
            real_node = args.real_node == "yes"
            if args.real_node == "auto":
                missing = load_node_module().missing_host_tools()
                real_node = not missing
                if missing:
                    log(f"no real node ({', '.join(missing)} missing): pods are faked by kwok")
            bin_dir = args.bin_dir or default_bin_dir()
            if args.build and missing_binaries(bin_dir, real_node=real_node):
                bin_dir = build_binaries(show_progress=True)
            cluster = LocalCluster(
                args.dir,
                bin_dir,
                detach=True,
                timeout=args.timeout,
                real_node=real_node,
                # Interactive use: every pod runs for real, none lands on a fake node.
                taint_node=False,
                kwok_node=args.kwok_node or not real_node,
            ).start()
            database_url = ""
            if real_node:
                try:
                    if not args.no_images:
                        import_images(cluster)
                    database_url = start_dev_postgres(cluster.workdir)
                except BaseException:
                    # Half a cluster helps nobody: stop it, and the host is as it was.
                    stop_dev_postgres(cluster.workdir)
                    cluster.stop()
                    raise
            # stdout is meant for `eval "$(make -s cluster-up)"`; everything else goes to stderr.
            print(f"export KUBECONFIG={shlex.quote(str(cluster.kubeconfig))}")
            print(f'export PATH={shlex.quote(str(cluster.bin_dir))}:"$PATH"')  # helm
            if database_url:
                print(f"export DATABASE_URL={shlex.quote(database_url)}")
            log(f"kubeconfig: {cluster.kubeconfig}")
            if real_node:
                log(f"PostgreSQL for your pools (reachable from pods and from here): {database_url}")
            log("watch it: kubectl get jwp,pods -A -o wide --watch")
        elif args.command == "images":
            for archive in build_all_images():
                print(archive)
        elif args.command == "down":
            cluster = LocalCluster.from_state(args.dir)
            if not cluster.components:
                log(f"nothing recorded in {cluster.workdir / STATE_FILE}")
            stop_dev_postgres(cluster.workdir)
            cluster.stop()
            # A crashed run may have left a real node behind that no state file of this dir names.
            node_lib = load_node_module()
            owner = node_lib.owner_workdir()
            if owner is not None and Path(owner).resolve().parent == cluster.workdir:
                node_lib.cleanup(Path(owner))
            log("stopped")
        else:
            cluster = LocalCluster.from_state(args.dir)
            for component in cluster.components:
                state = "running" if component.alive() and component.owned(cluster.workdir) else "stopped"
                print(f"{component.name:<24} {component.pid:>8} {state}")
    except (ClusterError, RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        # NodeError and ImageError are RuntimeErrors: one line, no traceback.
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
