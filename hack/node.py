"""A real kubelet node for the local control plane (hack/cluster.py): containerd + runc + a CNI bridge.

kwok fakes every pod; this node runs them. It is built from Debian's ``containerd``, ``runc`` and
``containernetworking-plugins``, and from kubelet, kube-proxy and the pause binary that
hack/build-k8s.sh builds from the same k8s.io/kubernetes version as the API server. Nothing is pulled
from a registry: the sandbox image is made here from the pause binary, and the jobworker images are
imported from archives (hack/images.py).

Network (all of it stays on this machine):

* a bridge ``jwbr0`` with the gateway address 10.244.0.1/24; pods get 10.244.0.2-254 from the CNI
  ``bridge`` plugin (``ipMasq: false``: nothing is translated out of the machine);
* the API server binds and advertises the gateway address, so pods reach it through the ``kubernetes``
  Service (kube-proxy, iptables mode), and the tests' PostgreSQL listens there too;
* a guard chain in the mangle table drops any packet from the pod range, or to the pod and Service ranges,
  that would leave through another interface than the bridge or loopback.

Every change to the host is recorded before it is made (``node-state.json`` in the node's directory, and
``/run/jobworker-node.json`` naming its owner) and undone by :func:`cleanup`: processes, containers and
their shims, mounts, ``kubepods`` cgroups, the bridge, iptables chains, sysctls and directories the
kubelet creates outside its root. Only one real node can run on a host at a time (kube-proxy owns the
``KUBE-*`` chains), so :func:`cleanup` also clears what a crashed run left behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BRIDGE = "jwbr0"
GATEWAY = "10.244.0.1"
NODE_SUBNET = "10.244.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"  # real pods (this /24) and kwok's fake pod IPs (10.244.128.0/17)
SERVICE_CIDR = "10.0.0.0/24"
NODE_NAME = "jobworker-node"
NODE_LABEL = ("jobworker.dev/node", "real")
NODE_TAINT = {"key": "jobworker.dev/node", "value": "real", "effect": "NoSchedule"}
SANDBOX_IMAGE = "registry.k8s.io/pause:3.10"
GUARD_CHAIN = "JOBWORKER-NODE-GUARD"
OWNER_FILE = Path("/run/jobworker-node.json")
STATE_FILE = "node-state.json"
CNI_BIN_DIR = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
HOST_TOOLS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip", "mount", "umount")
NODE_BINARIES = ("kubelet", "kube-proxy", "pause")
# What the kubelet and the bridge plugin change on the host, restored by cleanup().
SYSCTLS = (
    "net.ipv4.ip_forward",
    "vm.overcommit_memory",
    "kernel.panic",
    "kernel.panic_on_oops",
    "net.bridge.bridge-nf-call-iptables",
    "net.ipv4.conf.all.route_localnet",
    "net.netfilter.nf_conntrack_max",
)
# Directories the kubelet or CNI create outside the node's own directory: removed if they were absent.
HOST_DIRS = (
    "/var/log/containers",
    "/var/lib/cni",
    "/var/lib/kubelet",
    "/etc/cni",
    "/opt/cni",
    "/run/containerd",  # runc's state root for the shims
    "/opt/containerd",  # containerd's "opt" plugin
)
DEBIAN_PACKAGES = ("containerd", "runc", "containernetworking-plugins", "iptables", "iproute2", "util-linux")


class NodeError(RuntimeError):
    """The real node could not be started, or the host cannot run one."""


def _log(message: str) -> None:
    import sys

    print(f"[node] {message}", file=sys.stderr, flush=True)


def missing_host_tools() -> list[str]:
    """Host programs the node needs (from DEBIAN_PACKAGES), and whether we are root."""
    missing = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    missing += [f"{CNI_BIN_DIR}/{p}" for p in CNI_PLUGINS if not os.access(CNI_BIN_DIR / p, os.X_OK)]
    if os.geteuid() != 0:
        missing.append("root")
    return missing


def _run(args: Sequence[str], *, check: bool = True, timeout: float = 60, input: bytes | None = None) -> str:
    proc = subprocess.run(list(args), capture_output=True, timeout=timeout, input=input, check=False)
    if check and proc.returncode != 0:
        raise NodeError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode(errors="replace")


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


# --------------------------------------------------------------------------------------- pause image


def pause_image_archive(pause_binary: Path, dest: Path, name: str = SANDBOX_IMAGE) -> Path:
    """A docker-archive of a one-file image (``/pause``), for ``ctr images import``; no registry involved."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tar.gettarinfo(str(pause_binary), arcname="pause")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        info.mode = 0o755
        with open(pause_binary, "rb") as handle:
            tar.addfile(info, handle)
    layer_bytes = layer.getvalue()
    import hashlib

    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "hack/node.py: pause from k8s.io/kubernetes build/pause/linux/pause.c"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [name], "Layers": ["layer.tar"]}]
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, mode="w") as tar:
        for arcname, data in (
            ("layer.tar", layer_bytes),
            (config_name, config_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(arcname)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dest


# ------------------------------------------------------------------------------------- host changes


@dataclass
class HostState:
    """What the node changed on the host, written before each change so that cleanup() can undo it."""

    workdir: str
    sysctls: dict[str, str] = field(default_factory=dict)
    absent_dirs: list[str] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)
    containerd_address: str = ""

    @classmethod
    def load(cls, path: Path) -> HostState | None:
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return cls(
            workdir=str(raw.get("workdir", "")),
            sysctls={str(k): str(v) for k, v in raw.get("sysctls", {}).items()},
            absent_dirs=[str(d) for d in raw.get("absent_dirs", [])],
            pids={str(k): int(v) for k, v in raw.get("pids", {}).items()},
            containerd_address=str(raw.get("containerd_address", "")),
        )

    def save(self) -> None:
        data = json.dumps(self.__dict__, indent=2) + "\n"
        path = Path(self.workdir) / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data)
        OWNER_FILE.write_text(json.dumps({"workdir": self.workdir}) + "\n")


# ---------------------------------------------------------------------------------------- the node


class RealNode:
    """containerd, kube-proxy and kubelet for one node, with its bridge; ``start()``/``stop()``."""

    def __init__(
        self,
        workdir: Path,
        bin_dir: Path,
        *,
        server: str,
        kubeconfig: Path,
        ca_cert: Path,
        spawn: Callable[[str, Sequence[str], str | None], Any],
        api_get: Callable[[str], dict[str, Any] | None],
        taint: bool = True,
        timeout: float = 120,
    ) -> None:
        self.workdir = workdir.resolve()
        self.bin_dir = bin_dir
        self.server = server
        self.kubeconfig = kubeconfig
        self.ca_cert = ca_cert
        self._spawn = spawn
        self._api_get = api_get
        self.taint = taint
        self.timeout = timeout
        self.containerd_dir = self.workdir / "containerd"
        # A unix socket path must stay under 108 bytes: keep it short and out of deep pytest tmp paths.
        self.containerd_address = str(self.workdir / "c.sock")
        self.state = HostState(workdir=str(self.workdir), containerd_address=self.containerd_address)

    # --------------------------------------------------------------------------- host network first

    def prepare_host(self) -> None:
        """Record, then change the host: bridge, guard chain, ip_forward. Before the API server starts."""
        missing = missing_host_tools()
        if missing:
            raise NodeError(
                f"a real node needs {', '.join(missing)}; install the Debian packages "
                f"{' '.join(DEBIAN_PACKAGES)} (as root)"
            )
        missing_bins = [b for b in NODE_BINARIES if not os.access(self.bin_dir / b, os.X_OK)]
        if missing_bins:
            raise NodeError(f"missing {', '.join(missing_bins)} in {self.bin_dir} (run hack/build-k8s.sh)")
        leftover = owner_workdir()
        if leftover is not None:
            other = HostState.load(Path(leftover) / STATE_FILE)
            if other is not None and any(_pid_is(pid, name) for name, pid in other.pids.items()):
                raise NodeError(
                    f"a real node is already running from {leftover}; stop it first (make cluster-down, "
                    f"or python hack/cluster.py down --dir <its dir>)"
                )
            _log(f"cleaning up what a previous real node left behind ({leftover})")
            cleanup(Path(leftover))
        if _link_exists(BRIDGE):
            _log(f"removing a leftover bridge {BRIDGE}")
            _run(["ip", "link", "delete", BRIDGE], check=False)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state.sysctls = _read_sysctls()
        self.state.absent_dirs = [d for d in HOST_DIRS if not os.path.lexists(d)]
        self.state.save()

        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        _run(["ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE])
        _run(["ip", "link", "set", BRIDGE, "up"])
        _install_guard()
        # Service traffic from one pod to another is DNAT-ed on the host and forwarded back to the
        # bridge; the guard keeps anything else from being forwarded out of the machine.
        _sysctl_path("net.ipv4.ip_forward").write_text("1\n")

    # ----------------------------------------------------------------------------------- processes

    def start(self) -> None:
        """containerd (+ the pause image), the CNI config, kube-proxy and kubelet; waits for Ready."""
        self._start_containerd()
        self._write_cni_config()
        self._start_kube_proxy()
        self._start_kubelet()

    def _record(self, name: str, pid: int) -> None:
        self.state.pids[name] = pid
        self.state.save()

    def _start_containerd(self) -> None:
        root = self.containerd_dir / "root"
        state = self.containerd_dir / "state"
        config = self.containerd_dir / "config.toml"
        for directory in (root, state, self.workdir / "cni" / "net.d"):
            directory.mkdir(parents=True, exist_ok=True)
        config.write_text(
            "\n".join(
                [
                    "version = 2",
                    f'root = "{root}"',
                    f'state = "{state}"',
                    "[grpc]",
                    f'  address = "{self.containerd_address}"',
                    "[ttrpc]",
                    f'  address = "{self.containerd_address}.ttrpc"',
                    "[debug]",
                    f'  address = "{self.containerd_address}.debug"',
                    "[metrics]",
                    '  address = ""',
                    '[plugins."io.containerd.grpc.v1.cri"]',
                    f'  sandbox_image = "{SANDBOX_IMAGE}"',
                    # Root here lacks CAP_SYS_RESOURCE: runc may not lower oom_score_adj below ours.
                    "  restrict_oom_score_adj = true",
                    "  netns_mounts_under_state_dir = true",
                    "  disable_apparmor = true",
                    "  enable_selinux = false",
                    '[plugins."io.containerd.grpc.v1.cri".containerd]',
                    '  snapshotter = "overlayfs"',
                    '  default_runtime_name = "runc"',
                    '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
                    '  runtime_type = "io.containerd.runc.v2"',
                    '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]',
                    "  SystemdCgroup = false",
                    '[plugins."io.containerd.grpc.v1.cri".cni]',
                    f'  bin_dir = "{CNI_BIN_DIR}"',
                    f'  conf_dir = "{self.workdir / "cni" / "net.d"}"',
                    "",
                ]
            )
        )
        component = self._spawn("containerd", ["--config", str(config)], shutil.which("containerd"))
        self._record("containerd", component.pid)
        _poll("containerd to answer", lambda: self._ctr("version", check=False) != "", self.timeout)
        archive = pause_image_archive(self.bin_dir / "pause", self.containerd_dir / "pause.tar")
        self.import_image(archive)

    def _ctr(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        return _run(["ctr", "--address", self.containerd_address, "-n", "k8s.io", *args], check=check, timeout=timeout)

    def import_image(self, archive: Path) -> None:
        """Import a docker-archive into the node's containerd (CRI namespace), as ``kubectl`` images use it."""
        self._ctr("images", "import", "--no-unpack", str(archive), timeout=600)

    def kill_container(self, container_id: str) -> None:
        """SIGKILL a container's processes, as a crash would: no SIGTERM, no graceful shutdown."""
        self._ctr("tasks", "kill", "--all", "--signal", "SIGKILL", container_id.removeprefix("containerd://"))

    def image_names(self) -> list[str]:
        return [line.split()[0] for line in self._ctr("images", "ls").splitlines()[1:] if line.strip()]

    def _write_cni_config(self) -> None:
        conf = {
            "cniVersion": "1.0.0",
            "name": "jobworker-node",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    # No NAT: pod traffic is never translated out of the machine.
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(self.workdir / "cni" / "ipam"),
                        "ranges": [[{"subnet": NODE_SUBNET, "gateway": GATEWAY}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (self.workdir / "cni" / "net.d" / "10-jobworker.conflist").write_text(json.dumps(conf, indent=2) + "\n")

    def _start_kube_proxy(self) -> None:
        from_ports = _free_ports(2)
        config = self.workdir / "kube-proxy.yaml"
        config.write_text(
            json.dumps(
                {
                    "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                    "kind": "KubeProxyConfiguration",
                    "clientConnection": {"kubeconfig": str(self.kubeconfig)},
                    "mode": "iptables",
                    "clusterCIDR": CLUSTER_CIDR,
                    "hostnameOverride": NODE_NAME,
                    "bindAddress": "127.0.0.1",
                    "healthzBindAddress": f"127.0.0.1:{from_ports[0]}",
                    "metricsBindAddress": f"127.0.0.1:{from_ports[1]}",
                    "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
                    # 0 leaves the host's conntrack sysctls alone.
                    "conntrack": {
                        "maxPerCore": 0,
                        "min": 0,
                        "tcpEstablishedTimeout": "0s",
                        "tcpCloseWaitTimeout": "0s",
                    },
                },
                indent=2,
            )
        )
        component = self._spawn("kube-proxy", [f"--config={config}", "--v=1"], None)
        self._record("kube-proxy", component.pid)

    def _start_kubelet(self) -> None:
        root = self.workdir / "kubelet"
        root.mkdir(parents=True, exist_ok=True)
        port, healthz = _free_ports(2)
        config = self.workdir / "kubelet.yaml"
        kubelet_config: dict[str, Any] = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": GATEWAY,
            "port": port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz,
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_address}",
            "imageServiceEndpoint": f"unix://{self.containerd_address}",
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.ca_cert)},
            },
            "authorization": {"mode": "Webhook"},
            "makeIPTablesUtilChains": False,
            # Images are imported, never pulled: never garbage-collect them.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "50Mi",
                "nodefs.available": "1%",
                "nodefs.inodesFree": "1%",
                "imagefs.available": "1%",
            },
            "podLogsDir": str(self.workdir / "pod-logs"),
            "resolvConf": "/etc/resolv.conf",
            "serializeImagePulls": False,
            "maxPods": 60,
            "nodeStatusUpdateFrequency": "5s",
            "syncFrequency": "10s",
            "fileCheckFrequency": "20s",
            "volumeStatsAggPeriod": "0s",
            "registerWithTaints": [NODE_TAINT] if self.taint else [],
            "shutdownGracePeriod": "0s",
        }
        config.write_text(json.dumps(kubelet_config, indent=2) + "\n")
        key, value = NODE_LABEL
        component = self._spawn(
            "kubelet",
            [
                f"--config={config}",
                f"--kubeconfig={self.kubeconfig}",
                f"--root-dir={root}",
                f"--cert-dir={root / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={GATEWAY}",
                f"--node-labels={key}={value}",
                "--v=1",
            ],
            None,
        )
        self._record("kubelet", component.pid)
        _poll(f"node {NODE_NAME} to become Ready", self._ready, self.timeout)

    def _ready(self) -> bool:
        node = self._api_get(f"/api/v1/nodes/{NODE_NAME}")
        if node is None:
            return False
        conditions = node.get("status", {}).get("conditions", [])
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        taints = [t for t in node.get("spec", {}).get("taints") or [] if t.get("key") != NODE_TAINT["key"]]
        return ready and not taints

    def stop(self) -> None:
        cleanup(self.workdir)


# ------------------------------------------------------------------------------------------ cleanup


def owner_workdir() -> str | None:
    try:
        return str(json.loads(OWNER_FILE.read_text())["workdir"])
    except (OSError, ValueError, KeyError):
        return None


def _pid_is(pid: int, name: str) -> bool:
    try:
        exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return False
    return exe == name


def _link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def _install_guard() -> None:
    """Drop pod-range traffic that would leave through another interface than the bridge or loopback.

    mangle/POSTROUTING sees every packet after routing and after kube-proxy's DNAT, and kube-proxy never
    writes there, so its ACCEPT rules cannot bypass the guard.
    """
    _run(["iptables", "-t", "mangle", "-N", GUARD_CHAIN], check=False)
    _run(["iptables", "-t", "mangle", "-F", GUARD_CHAIN])
    for rule in (
        ["-o", BRIDGE, "-j", "RETURN"],
        ["-o", "lo", "-j", "RETURN"],
        ["-s", CLUSTER_CIDR, "-j", "DROP"],
        ["-d", CLUSTER_CIDR, "-j", "DROP"],
        ["-d", SERVICE_CIDR, "-j", "DROP"],
    ):
        _run(["iptables", "-t", "mangle", "-A", GUARD_CHAIN, *rule])
    _run(["iptables", "-t", "mangle", "-I", "POSTROUTING", "-j", GUARD_CHAIN])


def _remove_iptables() -> None:
    """kube-proxy's and the kubelet's KUBE-* chains, the CNI plugins' chains, and our guard, in both families."""
    for binary in ("iptables", "ip6tables"):
        if shutil.which(binary) is None:
            continue
        for table in ("filter", "nat", "mangle", "raw"):
            dump = _run([f"{binary}-save", "-t", table], check=False)
            ours = sorted(
                {
                    line[1:].split()[0]
                    for line in dump.splitlines()
                    if line.startswith(":") and _is_node_chain(line[1:].split()[0])
                }
            )
            if not ours:
                continue
            # Jumps from the built-in chains first, then flush, then delete.
            for line in dump.splitlines():
                if not line.startswith("-A "):
                    continue
                parts = shlex.split(line)  # comments are quoted: "kubernetes service portals"
                chain = parts[1]
                if _is_node_chain(chain):
                    continue
                if "-j" in parts and _is_node_chain(parts[parts.index("-j") + 1]):
                    _run([binary, "-t", table, "-D", *parts[1:]], check=False)
            for chain in ours:
                _run([binary, "-t", table, "-F", chain], check=False)
            for chain in ours:
                _run([binary, "-t", table, "-X", chain], check=False)


def _is_node_chain(chain: str) -> bool:
    return chain.startswith(("KUBE-", "CNI-")) or chain == GUARD_CHAIN


def _mounts_under(prefix: Path) -> list[str]:
    mounts: list[str] = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == str(prefix) or point.startswith(f"{prefix}/"):
                mounts.append(point)
    return mounts


def _unmount_all(prefix: Path) -> None:
    for _ in range(5):
        mounts = _mounts_under(prefix)
        if not mounts:
            return
        for point in sorted(mounts, key=len, reverse=True):
            if _run(["umount", point], check=False, timeout=30) == "" and point in _mounts_under(prefix):
                _run(["umount", "-l", point], check=False, timeout=30)


def _remove_cgroups() -> None:
    """The kubepods hierarchy (under every cgroup v1 controller, or the unified tree), bottom-up."""
    base = Path("/sys/fs/cgroup")
    roots = [base / "kubepods"] + [p / "kubepods" for p in base.iterdir() if p.is_dir()] if base.exists() else []
    for root in roots:
        if not root.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda item: item[0].count("/"), reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


def _stop_pid(pid: int, name: str, timeout: float = 20) -> None:
    if not _pid_is(pid, name):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_is(pid, name):
        time.sleep(0.1)
    if _pid_is(pid, name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _pid_is(pid, name):
            time.sleep(0.1)


def _shim_pids(address: str) -> list[int]:
    """containerd-shim-runc-v2 processes of this containerd (their command line names its socket)."""
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"containerd-shim-runc-v2") and address.encode() in b" ".join(args):
            pids.append(int(entry.name))
    return pids


def _kill_containers(address: str) -> None:
    if not address or not Path(address).exists():
        return
    ctr = ["ctr", "--address", address, "-n", "k8s.io"]
    tasks = _run([*ctr, "tasks", "ls", "-q"], check=False, timeout=30).split()
    for task in tasks:
        _run([*ctr, "tasks", "kill", "-a", "-s", "SIGKILL", task], check=False, timeout=30)
    for task in tasks:
        _run([*ctr, "tasks", "delete", "-f", task], check=False, timeout=30)
    for container in _run([*ctr, "containers", "ls", "-q"], check=False, timeout=30).split():
        _run([*ctr, "containers", "delete", container], check=False, timeout=30)


def cleanup(workdir: Path) -> None:
    """Stop the node recorded in ``workdir`` and undo every host change it recorded (idempotent)."""
    workdir = workdir.resolve()
    state = HostState.load(workdir / STATE_FILE)
    if state is None:
        state = HostState(workdir=str(workdir))
    for name in ("kubelet", "kube-proxy"):
        if name in state.pids:
            _stop_pid(state.pids[name], name)
    _kill_containers(state.containerd_address)
    if "containerd" in state.pids:
        _stop_pid(state.pids["containerd"], "containerd")
    for pid in _shim_pids(state.containerd_address) if state.containerd_address else []:
        _stop_pid(pid, "containerd-shim-runc-v2", timeout=5)
    _unmount_all(workdir)
    _remove_cgroups()
    if _link_exists(BRIDGE):
        _run(["ip", "link", "delete", BRIDGE], check=False)
    _remove_iptables()
    for name, value in state.sysctls.items():
        with contextlib.suppress(OSError):
            _sysctl_path(name).write_text(f"{value}\n")
    for directory in state.absent_dirs:
        shutil.rmtree(directory, ignore_errors=True)
    # Container logs link into the pod log directory; links left by this node point into workdir.
    links = Path("/var/log/containers")
    if links.is_dir():
        for link in links.iterdir():
            with contextlib.suppress(OSError):
                if link.is_symlink() and os.readlink(link).startswith(str(workdir)):
                    link.unlink()
    (workdir / STATE_FILE).unlink(missing_ok=True)
    if owner_workdir() == str(workdir):
        OWNER_FILE.unlink(missing_ok=True)


def _read_sysctls() -> dict[str, str]:
    values: dict[str, str] = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            values[name] = _sysctl_path(name).read_text().strip()
    return values


def host_snapshot() -> dict[str, Any]:
    """What a real node may change on the host: compare one taken before with one taken after cleanup."""
    return {
        "sysctls": _read_sysctls(),
        "dirs": sorted(d for d in HOST_DIRS if os.path.lexists(d)),
        "leftovers": leftovers(),
    }


def leftovers() -> list[str]:
    """Host changes a real node makes that are present now (for tests asserting a clean host)."""
    found: list[str] = []
    if _link_exists(BRIDGE):
        found.append(f"bridge {BRIDGE}")
    for table in ("filter", "nat", "mangle"):
        dump = _run(["iptables-save", "-t", table], check=False)
        chains = [line[1:].split()[0] for line in dump.splitlines() if line.startswith(":")]
        found += [f"iptables {table} {c}" for c in chains if _is_node_chain(c)]
    base = Path("/sys/fs/cgroup")
    found += [
        str(p) for p in [base / "kubepods", *(d / "kubepods" for d in base.iterdir() if d.is_dir())] if p.exists()
    ]
    if OWNER_FILE.exists():
        found.append(str(OWNER_FILE))
    return found


def _free_ports(count: int) -> list[int]:
    import socket

    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _poll(what: str, check: Callable[[], bool], timeout: float, interval: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            if check():
                return
        except (OSError, ValueError, KeyError, NodeError) as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise NodeError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" ({last})" if last else ""))
        time.sleep(interval)
