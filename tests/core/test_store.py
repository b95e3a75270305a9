"""The metadata store: per-store model binding, schema version, thread safety."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cachetui.core import CacheManager, StoreError
from cachetui.core.store import SCHEMA_VERSION


def test_two_stores_used_from_two_threads_never_mix(tmp_path: Path) -> None:
    """Peewee binds models per class; each store must use its own bound classes."""
    managers = [CacheManager.open(tmp_path / name) for name in ("one", "two")]
    errors: list[BaseException] = []
    made: dict[int, list[str]] = {0: [], 1: []}

    def work(index: int) -> None:
        cm = managers[index]
        try:
            for _ in range(60):
                ref = cm.new(retain=True)
                made[index].append(ref.id)
                ref.release()
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for index, cm in enumerate(managers):
        assert set(cm.state().rows) == set(made[index])
        cm.close()


def test_a_newer_schema_is_refused_naming_both_versions(tmp_path: Path) -> None:
    CacheManager.open(tmp_path).close()
    import sqlite3

    con = sqlite3.connect(tmp_path / "metadata.db")
    con.execute("UPDATE setting SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match=rf"schema version 99.*\({SCHEMA_VERSION}\)"):
        CacheManager.open(tmp_path)
