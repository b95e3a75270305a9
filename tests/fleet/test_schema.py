"""The fleet schema, URL handling, publishing and reading, against a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from cachetui.core import CacheManager, PruneOptions, StoreError
from cachetui.fleet import replica_store as replica
from cachetui.fleet.publisher import Publisher, Registration
from cachetui.fleet.reader import FleetError, FleetReader
from cachetui.fleet.replica_store import migrate, notify, schema_version
from cachetui.fleet.schema import CHANNEL, SCHEMA_VERSION
from cachetui.fleet.url import FleetURLError, check_url, describe_error, mask, open_database
from cachetui.service import CacheService
from tests.fleet.helpers import make_store
from tests.fleet.pgcluster import PASSWORD, PgCluster

# -- URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ci:hunter2@db.example:5432/fleet?sslmode=require",
        "postgres://ci:hunter2@db.example/fleet",
        "postgresql://ci@db.example/fleet?password=hunter2&sslmode=verify-full",
        "host=db.example user=ci password=hunter2 dbname=fleet",
        "host=db.example password='hunter2' dbname=fleet",
    ],
)
def test_mask_hides_every_form_of_password(url: str) -> None:
    shown = mask(url)
    assert "hunter2" not in shown
    assert "***" in shown
    assert "db.example" in shown  # the rest stays readable


def test_check_url_names_the_bad_input_without_its_password() -> None:
    with pytest.raises(FleetURLError, match=r"mysql.*not postgresql") as info:
        check_url("mysql://u:hunter2@h/db")
    assert "hunter2" not in str(info.value)
    with pytest.raises(FleetURLError, match="empty"):
        check_url("  ")
    with pytest.raises(FleetURLError, match="port"):
        check_url("postgresql://u:hunter2@h:notaport/db")
    assert check_url("postgres://h/db") == "postgresql://h/db"
    assert check_url("host=h dbname=d") == "host=h dbname=d"


def test_a_wrong_password_is_reported_masked(pg: PgCluster, fleet_db: str) -> None:
    url = pg.url(fleet_db).replace(PASSWORD, "not-the-pw-xyz")
    with pytest.raises(FleetError) as info, FleetReader(url) as fleet:
        fleet.stores()
    assert "not-the-pw-xyz" not in str(info.value)
    assert "password authentication failed" in str(info.value)
    assert describe_error(Exception("x not-the-pw-xyz"), url).count("not-the-pw-xyz") == 0


def test_pgpass_and_pg_variables_reach_libpq(
    pg: PgCluster, fleet_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = open_database(pg.url(fleet_db))
    migrate(db)
    db.close()
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:{pg.port}:{fleet_db}:postgres:{PASSWORD}\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    # no password in the URL: ~/.pgpass (here PGPASSFILE) supplies it
    with FleetReader(pg.url(fleet_db, password=False)) as fleet:
        assert fleet.stores() == []
    # and a conninfo of PG* variables alone, with a libpq parameter passed through
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    monkeypatch.setenv("PGPORT", str(pg.port))
    monkeypatch.setenv("PGUSER", "postgres")
    with FleetReader(f"dbname={fleet_db} sslmode=disable") as fleet:
        assert fleet.stores() == []
    with (
        pytest.raises(FleetError, match="SSL"),
        FleetReader(f"postgresql:///{fleet_db}?sslmode=require") as fleet,
    ):
        fleet.stores()  # sslmode reached libpq: this server has no SSL


# -- schema ----------------------------------------------------------------------------------


def test_migrate_creates_the_schema_once_and_refuses_a_newer_one(fleet_url: str) -> None:
    db = open_database(fleet_url)
    assert schema_version(db) == 0
    assert migrate(db) == 0
    assert schema_version(db) == SCHEMA_VERSION
    assert migrate(db) == SCHEMA_VERSION  # nothing to do the second time
    db.execute_sql("UPDATE fleet_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match=r"schema version 99.*upgrade cachetui"):
        migrate(db)
    db.close()
    with pytest.raises(FleetError, match="newer"), FleetReader(fleet_url) as fleet:
        fleet.stores()


def test_reader_on_an_empty_database_says_what_to_do(fleet_url: str) -> None:
    with pytest.raises(FleetError, match="start an agent"), FleetReader(fleet_url) as fleet:
        fleet.stores()


# -- publishing --------------------------------------------------------------------------


def test_publish_writes_differences_and_notifies_after_commit(
    fleet_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "host"
    ids = make_store(root, 5)
    db = open_database(fleet_url)
    migrate(db)
    publisher = Publisher(db, "h1")
    publisher.register(Registration("h1", "host", str(root), "t", 1))
    service = CacheService(root)
    with FleetReader(fleet_url) as fleet, fleet.listen() as listener:
        view = service.load()
        assert publisher.publish(view.rows, view.totals, [], synced=True) == 5
        notes = listener.wait(5)
        kinds = [n.kind for n in notes]
        assert "records" in kinds
        assert {r.id for r in fleet.records("h1")} == set(ids)
        assert fleet.store("h1").records == 5  # type: ignore[union-attr]
        first = fleet.store("h1").version  # type: ignore[union-attr]

        # nothing changed: nothing written, no notification
        assert publisher.publish(view.rows, view.totals, []) == 0
        assert [n for n in listener.wait(0.3) if n.kind == "records"] == []

        # a removal is published as a deletion, named in the notification
        with CacheManager.open(root) as cm:
            cm.prune(PruneOptions(all=True, filters=(f"id=={ids[0]}",)))
        view = service.load()
        assert publisher.publish(view.rows, view.totals, []) == 1
        records_notes = [n for n in listener.wait(5) if n.kind == "records"]
        assert records_notes and records_notes[-1].payload["deleted"] == [ids[0]]
        assert {r.id for r in fleet.records("h1")} == set(ids[1:])
        assert fleet.records("h1", since_version=first) == []  # only a deletion happened

        # a listener sees nothing of a transaction that rolled back
        with pytest.raises(RuntimeError), db.atomic():
            notify(db, CHANNEL, {"store": "h1", "kind": "records"})
            raise RuntimeError("roll back")
        assert listener.wait(0.3) == []

        # the publisher forgot (an outage): it reads the replica back and repairs it
        db.execute_sql("DELETE FROM fleet_record WHERE store = 'h1' AND id = %s", (ids[1],))
        db.execute_sql(
            "INSERT INTO fleet_record SELECT 'h1', 'zzzzzzzzzzzzzzzzzzzzzzzzz', parent, mutable, "
            "in_use, held, retain, pending_commit, record_type, description, size, created_at, "
            "last_used_at, usage_count, shared, has_children, version FROM fleet_record "
            "WHERE store = 'h1' LIMIT 1"
        )
        publisher.forget()
        assert publisher.publish(view.rows, view.totals, [], synced=True) == 2
        assert {r.id for r in fleet.records("h1")} == set(ids[1:])
    service.close()
    db.close()


def test_stores_report_offline_with_the_age_of_what_is_known(fleet_url: str) -> None:
    db = open_database(fleet_url)
    migrate(db)
    Publisher(db, "old").register(Registration("old", "h", "/r", "t", 1))
    db.execute_sql("UPDATE fleet_store SET heartbeat_at = heartbeat_at - 42")
    with FleetReader(fleet_url) as fleet:
        (store,) = fleet.stores()
        assert not store.online
        assert store.status == "offline for 42s"
        with pytest.raises(FleetError, match=r"store old is offline for 42s"):
            fleet.check_online("old")
        with pytest.raises(FleetError, match=r"no store named 'nope'.*known: old"):
            fleet.check_online("nope")
    db.close()


def test_the_listener_reports_a_dead_connection(pg: PgCluster, fleet_url: str) -> None:
    db = open_database(fleet_url)
    migrate(db)
    db.close()
    with FleetReader(fleet_url) as fleet, fleet.listen() as listener:
        with psycopg.connect(pg.admin_conninfo("postgres"), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (fleet_url.rsplit("/", 1)[1],),
            )
        with pytest.raises(FleetError):
            for _ in range(20):
                listener.wait(0.2)


def test_a_record_stream_closes_its_cursor_and_fails_as_a_fleet_error(
    fleet_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that stops early still has the cursor closed; a driver error while the
    rows are fetched is a ``FleetError``, as every other read's is."""
    root = tmp_path / "host"
    make_store(root, 5)
    db = open_database(fleet_url)
    migrate(db)
    publisher = Publisher(db, "h1")
    publisher.register(Registration("h1", "host", str(root), "t", 1))
    view = CacheService(root).load()
    assert publisher.publish(view.rows, view.totals, [], synced=True) == 5
    cursors: list[Any] = []
    real_execute = replica._execute

    def noting_cursor(db: Any, sql: str, params: Any = ()) -> Any:
        cursors.append(real_execute(db, sql, params))
        return cursors[-1]

    monkeypatch.setattr(replica, "_execute", noting_cursor)
    with FleetReader(fleet_url) as fleet:
        stream = fleet.record_stream("h1")
        next(stream)
        assert not cursors[-1].closed
        stream.close()  # the consumer stops after one row
        assert cursors[-1].closed
        stream = fleet.record_stream("h1")
        cursors[-1].close()  # its next fetch now fails in the driver
        with pytest.raises(FleetError, match="cursor is closed"):
            list(stream)
        assert len(fleet.record_rows("h1")) == 5  # the reader still reads
