"""The migrated schema is committed as tests/schema.sql; any change to it shows up in review.

Regenerate with: JOBWORKER_UPDATE_SCHEMA=1 make test PYTEST_ARGS=tests/integration/test_schema_dump.py
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import psycopg

from jobworker.devdb import _bin_dir

SCHEMA_FILE = Path(__file__).parent.parent / "schema.sql"


def dump(url: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    out = subprocess.run(
        [
            str(_bin_dir() / "pg_dump"),
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--schema=graphile_worker",
            "-h",
            str(info.get("host", "127.0.0.1")),
            "-p",
            str(info.get("port", 5432)),
            "-U",
            str(info.get("user", "postgres")),
            str(info["dbname"]),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    # Strip comments, version banners and the random restrict key newer pg_dump writes.
    lines = [
        line
        for line in out.splitlines()
        if line.strip() and not line.startswith("--") and not re.match(r"^\\(un)?restrict ", line)
    ]
    return "\n".join(lines) + "\n"


def test_migrated_schema_matches_the_committed_dump(db_url: str) -> None:
    actual = dump(db_url)
    if os.environ.get("JOBWORKER_UPDATE_SCHEMA"):
        SCHEMA_FILE.write_text(actual)
    assert SCHEMA_FILE.exists(), "tests/schema.sql is missing; regenerate it with JOBWORKER_UPDATE_SCHEMA=1"
    assert actual == SCHEMA_FILE.read_text(), "the schema changed: review the diff, then regenerate tests/schema.sql"
