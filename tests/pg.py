"""Real PostgreSQL for tests: the embedded server, or JOBWORKER_TEST_DATABASE_URL when set.

A template database is migrated once per session; each test gets a fresh copy of it
(CREATE DATABASE ... TEMPLATE), which takes a fraction of a second.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg

from jobworker import migrate
from jobworker.devdb import EphemeralPostgres

TEMPLATE = "jobworker_template"


@dataclass
class PgServer:
    admin_url: str
    embedded: EphemeralPostgres | None

    def url_for(self, database: str) -> str:
        return psycopg.conninfo.make_conninfo(self.admin_url, dbname=database)

    def create_database(self, *, template: str | None = TEMPLATE) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            if template:
                conn.execute(f'create database "{name}" template "{template}"')  # type: ignore[arg-type]
            else:
                conn.execute(f'create database "{name}"')  # type: ignore[arg-type]
        return self.url_for(name)

    def drop_database(self, url: str) -> None:
        name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')  # type: ignore[arg-type]


def start_server() -> Iterator[PgServer]:
    external = os.environ.get("JOBWORKER_TEST_DATABASE_URL")
    embedded = None if external else EphemeralPostgres().start()
    server = PgServer(external or embedded.url, embedded)  # type: ignore[union-attr]
    try:
        with psycopg.connect(server.admin_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{TEMPLATE}" with (force)')  # type: ignore[arg-type]
            conn.execute(f'create database "{TEMPLATE}"')  # type: ignore[arg-type]
        asyncio.run(migrate.migrate(server.url_for(TEMPLATE)))
        yield server
    finally:
        if embedded is not None:
            embedded.cleanup()
