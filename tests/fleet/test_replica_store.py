"""Every SQL statement of the fleet lives in ``cachetui.fleet.replica_store``: the other
fleet modules call its named operations. This reads their source and fails on SQL."""

from __future__ import annotations

import re
from pathlib import Path

import cachetui

PACKAGE = Path(cachetui.__file__).parent
SQL = re.compile(
    r"""["'f](?:SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE (?:TABLE|INDEX)|LISTEN)\b"""
    r"|\.execute_sql\(|\.executemany\(|\.copy\("
)


def test_no_sql_outside_the_replica_store() -> None:
    modules = [*sorted((PACKAGE / "fleet").glob("*.py")), *sorted(PACKAGE.glob("fleet_*.py"))]
    assert PACKAGE / "fleet" / "replica_store.py" in modules
    found = []
    for path in modules:
        if path.name == "replica_store.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if SQL.search(line):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert not found, "SQL outside cachetui/fleet/replica_store.py:\n" + "\n".join(found)


def test_the_pattern_sees_sql() -> None:
    for line in (
        'db.execute_sql("SELECT 1")',
        '    "INSERT INTO fleet_record (store) VALUES (%s)"',
        'f"UPDATE fleet_store SET x = 1"',
        'conn.execute(f"LISTEN {channel}")',
    ):
        assert SQL.search(line), line
