"""Every SQL statement of the core sits behind the store's named operations.

``store.py`` (connection, schema, transactions), ``recordstore.py`` (the verbs) and
``writelock.py`` (the connection's lock waiting) may hold SQL; a statement anywhere else
in the core is a rule about the rows written outside the one place that owns them.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import cachetui.core

STORE_MODULES = {"store.py", "recordstore.py", "writelock.py"}
SQL = re.compile(
    r"^\s*(SELECT\s|INSERT\s|UPDATE \w+ SET|DELETE FROM|PRAGMA\s"
    r"|CREATE (TABLE|INDEX|TRIGGER)|ALTER TABLE)"
)


def _sql_strings(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value):
            found.append((node.lineno, node.value.strip().splitlines()[0]))
    return found


def test_no_sql_outside_the_store_modules() -> None:
    core = Path(cachetui.core.__file__).parent
    outside = {
        f"{path.name}:{line}": text
        for path in sorted(core.glob("*.py"))
        if path.name not in STORE_MODULES
        for line, text in _sql_strings(path)
    }
    assert outside == {}


def test_the_check_sees_sql() -> None:
    """The scan finds statements where they are (so an empty result above means none)."""
    core = Path(cachetui.core.__file__).parent
    assert len(_sql_strings(core / "recordstore.py")) > 20
