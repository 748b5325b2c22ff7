"""``jobworker migrate`` on a graphile schema older than 19 exits 5 with the upgrade path, and changes nothing."""

from __future__ import annotations

from tests.acceptance.helpers import jobworker, sql


def test_an_older_graphile_schema_exits_5_not_4(empty_db_url: str) -> None:
    sql(
        empty_db_url,
        "create schema graphile_worker; "
        "create table graphile_worker.migrations (id int primary key, ts timestamptz default now(), breaking bool);"
        "insert into graphile_worker.migrations (id, breaking) select i, false from generate_series(1, 18) i",
    )
    result = jobworker(empty_db_url, "migrate")
    assert result.code == 5, result.describe()
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: schema graphile_worker is at graphile-worker migration 18, older than"), line
    assert "graphile-worker@0.17" in line and "newer" not in line
    assert sql(empty_db_url, "select count(*) as n from graphile_worker.migrations") == [{"n": 18}]
