"""Fixtures for the fleet tests: a real PostgreSQL server and a fresh database per test.

One cluster per pytest process (each xdist worker starts its own), a new database for
every test. Without PostgreSQL's server binaries the tests skip and say why, except under
``CI=true`` where a missing server fails the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.fleet.pgcluster import PgCluster, find_bindir


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    bindir = find_bindir()
    if bindir is None:
        message = (
            "PostgreSQL's server binaries are not installed (no /usr/lib/postgresql/*/bin/"
            "initdb; set PG_BINDIR or apt-get install postgresql)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    cluster = PgCluster(bindir)
    try:
        cluster.init()
        cluster.start()
    except Exception as err:
        cluster.destroy()
        log = cluster.log.read_text() if cluster.log.exists() else ""
        pytest.fail(f"cannot start a throwaway PostgreSQL from {bindir}: {err}\n{log}")
    yield cluster
    cluster.destroy()


@pytest.fixture
def pg(pg_cluster: PgCluster) -> Iterator[PgCluster]:
    """The cluster, running again after the test whatever the test did to it."""
    pg_cluster.start()
    yield pg_cluster
    if not pg_cluster.running():
        pg_cluster.start()


@pytest.fixture
def fleet_db(pg: PgCluster) -> Iterator[str]:
    """The name of a fresh, empty database on the cluster."""
    name = pg.create_database()
    yield name
    if not pg.running():
        pg.start()
    pg.drop_database(name)


@pytest.fixture
def fleet_url(pg: PgCluster, fleet_db: str) -> str:
    """A ``postgresql://`` URL (with a password) to a fresh database."""
    return pg.url(fleet_db)
