"""Install and upgrade the schema.

The shared ``migrations`` table holds exactly graphile-worker's ids: 1..19 of 0.17, and 0.18's 20 when
no id of 20 or more is there yet (graphile_worker_rs numbers its own 20..22, and every runtime skips the
ids at or below the newest recorded one). jobworker's own additions are recorded in
``jobworker_migrations`` so the two numberings never clash. jobworker migrators serialise on an
advisory lock, so any number of them may start at once; other runtimes' migrators meet them on the
shared table's primary key, as graphile-worker's own concurrent migrators do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from jobworker import db, errors, sql

GRAPHILE_LATEST = 20
"""The newest graphile-worker migration this jobworker implements (graphile-worker 0.18)."""
GRAPHILE_INSTALL = 19
"""The migration graphile_000019.sql installs the schema at, in one step."""

_LOCK = "select pg_advisory_xact_lock(hashtext('jobworker.migrate:' || %(schema)s::text))"


class BreakingMigrationPendingError(errors.JobworkerError):
    """A breaking migration is pending while workers are active; drain them first."""


@dataclass(frozen=True)
class MigrationResult:
    installed: bool
    graphile_version: int
    jobworker_version: int
    applied: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.applied)


async def migrate(url: str, schema: str = db.DEFAULT_SCHEMA, *, allow_breaking: bool = False) -> MigrationResult:
    """Bring the schema up to date; a second run does nothing."""
    schema = db.resolve_schema(schema)
    conn = await db.connect(url, autocommit=False)
    try:
        with db.wrap_exceptions():
            async with conn.transaction():
                return await _migrate(conn, schema, allow_breaking=allow_breaking)
    finally:
        await conn.close()


async def _migrate(conn: psycopg.AsyncConnection[Any], schema: str, *, allow_breaking: bool) -> MigrationResult:
    await conn.execute(_LOCK, {"schema": schema})
    families = sql.migration_files()
    applied: list[str] = []
    installed = False
    graphile = await _graphile_version(conn, schema)
    upgrades = dict(families["graphile"])
    if graphile is None:
        await conn.execute(sql.render(upgrades[GRAPHILE_INSTALL], schema))
        graphile, installed = GRAPHILE_INSTALL, True
        applied.append(f"graphile {GRAPHILE_INSTALL}")
    elif graphile < GRAPHILE_INSTALL:
        raise errors.SchemaTooOldError(
            f"schema {schema} is at graphile-worker migration {graphile}, older than the {GRAPHILE_INSTALL} "
            "jobworker installs; upgrade it once with graphile-worker 0.17 (`npx graphile-worker@0.17 "
            "--schema-only`), then run jobworker migrate"
        )
    for number in range(graphile + 1, GRAPHILE_LATEST + 1):
        # Claim the id first, as graphile-worker's migrators do: a concurrent Node or Rust migrator
        # that took it (committed or not) makes this insert wait, then do nothing, and we skip the step.
        cur = await conn.execute(
            sql.render(
                "insert into __SCHEMA__.migrations (id, breaking) values (%(id)s, false) "
                "on conflict (id) do nothing returning id",
                schema,
            ),
            {"id": number},
        )
        if await cur.fetchone():
            await conn.execute(sql.render(upgrades[number], schema))
            applied.append(f"graphile {number}")
        graphile = number
    await conn.execute(
        sql.render(
            "create table if not exists __SCHEMA__.jobworker_migrations "
            "(id int primary key, ts timestamptz not null default now(), breaking boolean not null default false)",
            schema,
        )
    )
    cur = await conn.execute(
        sql.render("select coalesce(max(id), 0) as v from __SCHEMA__.jobworker_migrations", schema)
    )
    row = await cur.fetchone()
    current = int(row["v"]) if row else 0
    known = families["jobworker"]
    newest_known = known[-1][0] if known else 0
    if current > newest_known:
        breaking = await conn.execute(
            sql.render("select id from __SCHEMA__.jobworker_migrations where id > %(v)s and breaking", schema),
            {"v": newest_known},
        )
        if await breaking.fetchone():
            raise errors.SchemaTooNewError(
                f"schema {schema} has jobworker migration {current}, which is breaking and newer than the "
                f"{newest_known} this version knows; upgrade jobworker"
            )
    pending = [(n, text) for n, text in known if n > current]
    # With no jobworker migration applied yet, no jobworker worker can be running here: the workers
    # that are (Rust ones, on a schema graphile_worker_rs migrated) are not what a drain protects.
    breaking_pending = [n for n, text in pending if _is_breaking(text)]
    if pending and current and not allow_breaking and breaking_pending:
        active = await _active_workers(conn, schema)
        if active:
            raise BreakingMigrationPendingError(
                # Name the breaking one: a later, non-breaking migration may be pending with it.
                f"refusing breaking jobworker migration {breaking_pending[-1]} while {active} workers are active; "
                "drain them first, or pass --allow-breaking"
            )
    for number, text in pending:
        await conn.execute(sql.render(text, schema))
        await conn.execute(
            sql.render("insert into __SCHEMA__.jobworker_migrations (id, breaking) values (%(id)s, %(b)s)", schema),
            {"id": number, "b": _is_breaking(text)},
        )
        applied.append(f"jobworker {number}")
    return MigrationResult(installed, graphile, max(current, newest_known), applied)


def _is_breaking(text: str) -> bool:
    return text.lstrip().startswith("--! breaking")


async def _graphile_version(conn: psycopg.AsyncConnection[Any], schema: str) -> int | None:
    cur = await conn.execute(
        "select to_regclass(%(t)s) is not null as present", {"t": f"{sql.quote_schema(schema)}.migrations"}
    )
    row = await cur.fetchone()
    if not row or not row["present"]:
        return None
    cur = await conn.execute(sql.render("select id, breaking from __SCHEMA__.migrations order by id", schema))
    rows = await cur.fetchall()
    if not rows:
        return None
    newer_breaking = [r["id"] for r in rows if r["id"] > GRAPHILE_LATEST and r["breaking"]]
    if newer_breaking:
        raise errors.SchemaTooNewError(
            f"schema {schema} has graphile-worker migration {max(newer_breaking)}, which is breaking and newer "
            f"than the {GRAPHILE_LATEST} this jobworker knows; upgrade jobworker before running it here"
        )
    return min(int(rows[-1]["id"]), GRAPHILE_LATEST) if rows[-1]["id"] > GRAPHILE_LATEST else int(rows[-1]["id"])


async def _active_workers(conn: psycopg.AsyncConnection[Any], schema: str) -> int:
    cur = await conn.execute(
        sql.render(
            # jobworker's own workers only: a drain stops those, never the Node or Rust ones sharing the table.
            "select count(*) as n from __SCHEMA__._private_workers "
            "where last_heartbeat_at > now() - interval '1 minute' and metadata ->> 'runtime' = 'jobworker'",
            schema,
        )
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def schema_version(url: str, schema: str = db.DEFAULT_SCHEMA) -> tuple[int | None, int]:
    """(graphile migration, jobworker migration) of the database, without changing it."""
    async with db.connection(url) as conn:
        with db.wrap_exceptions():
            graphile = await _graphile_version(conn, schema)
            if graphile is None:
                return None, 0
            cur = await conn.execute(
                "select to_regclass(%(t)s) is not null as present",
                {"t": f"{sql.quote_schema(schema)}.jobworker_migrations"},
            )
            row = await cur.fetchone()
            if not row or not row["present"]:
                return graphile, 0
            cur = await conn.execute(
                sql.render("select coalesce(max(id), 0) as v from __SCHEMA__.jobworker_migrations", schema)
            )
            row = await cur.fetchone()
            return graphile, int(row["v"]) if row else 0
