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

from jobworker import db, errors, queries, sql
from jobworker.store import JobStore, Transaction

GRAPHILE_LATEST = 20
"""The newest graphile-worker migration this jobworker implements (graphile-worker 0.18)."""
GRAPHILE_INSTALL = 19
"""The migration graphile_000019.sql installs the schema at, in one step."""


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
    async with JobStore(url, schema) as store, store.transaction() as tx:
        return await _migrate(tx, store.schema, allow_breaking=allow_breaking)


async def _migrate(tx: Transaction, schema: str, *, allow_breaking: bool) -> MigrationResult:
    await tx.execute(queries.MIGRATE_LOCK, {"schema": schema})
    families = sql.migration_files()
    applied: list[str] = []
    installed = False
    graphile = await _graphile_version(tx, schema)
    upgrades = dict(families["graphile"])
    if graphile is None:
        await tx.run_migration(upgrades[GRAPHILE_INSTALL])
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
        if await tx.one(queries.CLAIM_GRAPHILE_MIGRATION, {"id": number}):
            await tx.run_migration(upgrades[number])
            await tx.execute(queries.NOTIFY_MIGRATION, {"id": number, "breaking": False, "family": "graphile"})
            applied.append(f"graphile {number}")
        graphile = number
    await tx.execute(queries.CREATE_JOBWORKER_MIGRATIONS)
    row = await tx.one(queries.JOBWORKER_VERSION)
    current = row.version if row else 0
    known = families["jobworker"]
    newest_known = known[-1][0] if known else 0
    if current > newest_known:
        if await tx.one(queries.NEWER_BREAKING_JOBWORKER_MIGRATIONS, {"version": newest_known}):
            raise errors.SchemaTooNewError(
                f"schema {schema} has jobworker migration {current}, which is breaking and newer than the "
                f"{newest_known} this version knows; upgrade jobworker"
            )
    pending = [(n, text) for n, text in known if n > current]
    # With no jobworker migration applied yet, no jobworker worker can be running here: the workers
    # that are (Rust ones, on a schema graphile_worker_rs migrated) are not what a drain protects.
    breaking_pending = [n for n, text in pending if _is_breaking(text)]
    if pending and current and not allow_breaking and breaking_pending:
        active = await _active_workers(tx)
        if active:
            raise BreakingMigrationPendingError(
                # Name the breaking one: a later, non-breaking migration may be pending with it.
                f"refusing breaking jobworker migration {breaking_pending[-1]} while {active} workers are active; "
                "drain them first, or pass --allow-breaking"
            )
    for number, text in pending:
        await tx.run_migration(text)
        await tx.execute(queries.RECORD_JOBWORKER_MIGRATION, {"id": number, "breaking": _is_breaking(text)})
        # graphile-worker's workers sharing the schema exit (code 57) on a breaking one, as jobworker's do.
        notice = {"id": number, "breaking": _is_breaking(text), "family": "jobworker"}
        await tx.execute(queries.NOTIFY_MIGRATION, notice)
        applied.append(f"jobworker {number}")
    return MigrationResult(installed, graphile, max(current, newest_known), applied)


def _is_breaking(text: str) -> bool:
    return text.lstrip().startswith("--! breaking")


async def _graphile_version(session: JobStore | Transaction, schema: str) -> int | None:
    present = await session.one(queries.GRAPHILE_MIGRATIONS_PRESENT, {"schema": schema})
    if not present or not present.present:
        return None
    rows = await session.all(queries.GRAPHILE_MIGRATIONS)
    if not rows:
        return None
    newer_breaking = [r.id for r in rows if r.id > GRAPHILE_LATEST and r.breaking]
    if newer_breaking:
        raise errors.SchemaTooNewError(
            f"schema {schema} has graphile-worker migration {max(newer_breaking)}, which is breaking and newer "
            f"than the {GRAPHILE_LATEST} this jobworker knows; upgrade jobworker before running it here"
        )
    return min(rows[-1].id, GRAPHILE_LATEST)


async def _active_workers(tx: Transaction) -> int:
    row = await tx.one(queries.ACTIVE_JOBWORKER_WORKERS)
    return row.count if row else 0


async def schema_version(url: str, schema: str = db.DEFAULT_SCHEMA) -> tuple[int | None, int]:
    """(graphile migration, jobworker migration) of the database, without changing it."""
    async with JobStore(url, schema) as store:
        graphile = await _graphile_version(store, store.schema)
        if graphile is None:
            return None, 0
        present = await store.one(queries.JOBWORKER_MIGRATIONS_PRESENT, {"schema": store.schema})
        if not present or not present.present:
            return graphile, 0
        row = await store.one(queries.JOBWORKER_VERSION)
        return graphile, row.version if row else 0
