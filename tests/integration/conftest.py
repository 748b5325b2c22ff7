from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from jobworker.worker_utils import WorkerUtils
from tests.pg import PgServer, start_server


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    yield from start_server()


@pytest.fixture
def db_url(pg: PgServer) -> Iterator[str]:
    url = pg.create_database()
    yield url
    pg.drop_database(url)


@pytest.fixture
def empty_db_url(pg: PgServer) -> Iterator[str]:
    url = pg.create_database(template=None)
    yield url
    pg.drop_database(url)


@pytest.fixture
async def utils(db_url: str) -> AsyncIterator[WorkerUtils]:
    async with WorkerUtils(db_url) as u:
        yield u


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)
