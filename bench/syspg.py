"""A durable throwaway PostgreSQL from the distribution's packages (Debian: ``apt-get install postgresql``).

The headline of issue #13 is measured on production settings: ``fsync``, ``synchronous_commit`` and
``full_page_writes`` on. This starts a private cluster (not the distribution's own) in a temp dir, as
the ``postgres`` user, on a free loopback port, with ``pg_stat_statements`` preloaded so the bench can
read per-statement costs, and deletes it all on exit. fsync can be switched off and on again at run
time (``set_durable``: both settings are reloadable), which gives the labelled fsync-off column on the
very same server.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg

USER = "postgres"
SETTINGS = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "all",
    "max_connections": "300",
    "shared_buffers": "512MB",
    "track_io_timing": "on",
    "track_wal_io_timing": "on",
    "listen_addresses": "'127.0.0.1'",
}


def bin_dir() -> Path:
    """The newest versioned server binaries (/usr/lib/postgresql/<major>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[-3]))
    if not found:
        raise SystemExit("no /usr/lib/postgresql/*/bin/postgres: apt-get install -y postgresql")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user(argv: list[str], timeout: float = 120) -> None:
    kwargs = {"user": USER} if os.geteuid() == 0 else {}
    subprocess.run(argv, check=True, capture_output=True, timeout=timeout, **kwargs)  # type: ignore[arg-type]


@contextlib.contextmanager
def cluster() -> Iterator[tuple[str, int]]:
    """Yield (admin URL, postmaster pid) of a fresh durable cluster; stop and delete it afterwards."""
    binaries = bin_dir()
    top = Path(tempfile.mkdtemp(prefix="jobworker-bench-pg-"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam(USER)
        os.chown(top, pw.pw_uid, pw.pw_gid)
    data = top / "data"
    port = _free_port()
    started = False
    try:
        _as_user([str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
        with (data / "postgresql.conf").open("a") as conf:
            conf.write("\n# jobworker bench: production durability\n")
            for key, value in {**SETTINGS, "port": str(port), "unix_socket_directories": f"'{top}'"}.items():
                conf.write(f"{key} = {value}\n")
        _as_user([str(binaries / "pg_ctl"), "-D", str(data), "-l", str(top / "server.log"), "-w", "start"])
        started = True
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("create extension if not exists pg_stat_statements")
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        yield url, pid
    finally:
        if started:
            with contextlib.suppress(subprocess.SubprocessError):
                _as_user([str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
        shutil.rmtree(top, ignore_errors=True)


def set_durable(url: str, durable: bool) -> None:
    """fsync and synchronous_commit both on (production) or both off (the labelled secondary column)."""
    value = "on" if durable else "off"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"alter system set fsync = {value}")
        conn.execute(f"alter system set synchronous_commit = {value}")
        conn.execute("select pg_reload_conf()")
