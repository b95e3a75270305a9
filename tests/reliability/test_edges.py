"""Inputs at the edges: each is a clear ``CacheError`` (a one-line CLI message, exit 1
or 2), never a traceback, a hang, or a crash that repeats in every later process.

Covers: catastrophic regular expressions, regex nesting and repetition limits, integers
past 64 bits, lone surrogates, over-long names, bad clocks, timestamps edited by hand,
``--root ""``, and SQLite errors outside a transaction.
"""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cachetui.core import (
    CacheManager,
    FilterSyntaxError,
    InvalidError,
    PruneOptions,
    filters,
)
from cachetui.core import prune as prune_module
from cachetui.core.timestamps import UNKNOWN_TIME
from tests.reliability.workers import child_env


def cli(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cachetui", *args],
        capture_output=True,
        text=True,
        env=child_env(),
        input=stdin,
        timeout=timeout,
    )


def one_line_error(done: subprocess.CompletedProcess, code: int) -> str:
    """The CLI failed with ``code`` and a single ``cachetui: ...`` line, no traceback."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr
    assert lines[0].startswith("cachetui: "), lines
    return done.stderr


def _record(cm: CacheManager, description: str = "", content: int = 4096) -> str:
    ref = cm.new(description=description)
    upper = ref.mount().upper
    assert upper is not None
    (upper / "f").write_bytes(b"f" * content)
    imm = ref.commit()
    imm.finalize()
    imm.release()
    return imm.id


# -- regular expressions ------------------------------------------------------------------


def test_catastrophic_regex_is_linear(cm: CacheManager) -> None:
    """``^(a+)+$`` against 40 a's and a b: days with a backtracking engine, instant here."""
    rid = _record(cm, description="a" * 40 + "b")
    keep = _record(cm, description="a" * 40)
    assert [u.id for u in cm.disk_usage(["description~=^(a+)+$"])] == [keep]
    removed = cm.prune(PruneOptions(all=True, filters=("description~=^(a+)+b$",)))
    assert [u.id for u in removed] == [rid]


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a)\1", "invalid escape sequence"),  # backreferences: RE2 has none
        (r"(?<=a)b", "invalid perl operator"),  # lookbehind
        ("x{1001}", "invalid repetition size"),
        ("a**", "bad repetition operator"),
    ],
)
def test_patterns_re2_refuses_say_why(pattern: str, why: str) -> None:
    with pytest.raises(FilterSyntaxError, match=why):
        filters.parse(f"description~={pattern}")


def test_deep_nesting_and_huge_repetition_never_escape(tmp_path: Path, cm: CacheManager) -> None:
    """RecursionError and OverflowError used to reach users as tracebacks."""
    _record(cm, description="x")
    cm.close()
    root = str(cm.root)
    nested = "description~=" + "(" * 500 + "x" + ")" * 500
    assert cli("du", "--root", root, "--filter", nested).returncode == 0
    for text in ["description~=x{4294967295}", "description~=" + "(" * 5000 + ")" * 5000]:
        done = cli("du", "--root", root, "--filter", text)
        assert done.returncode in (0, 2) and "Traceback" not in done.stderr, done.stderr
        if done.returncode == 2:
            assert "invalid regular expression" in done.stderr


def test_no_regex_is_evaluated_inside_the_write(
    cm: CacheManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prune matches filters before its write transaction, never inside it: a slow
    filter must not block every other process's ``new()``."""
    for i in range(25):
        _record(cm, description=f"build {i}")
    inside: list[bool] = []
    original = filters.FilterSet.matches

    def spy(self: filters.FilterSet, fields: dict[str, str]) -> bool:
        inside.append(cm.store.db.in_transaction())
        return original(self, fields)

    monkeypatch.setattr(filters.FilterSet, "matches", spy)
    removed = cm.prune(PruneOptions(filters=("description~=^build",)))
    assert len(removed) == 25
    assert inside and not any(inside)


def test_a_record_changed_under_the_filter_is_skipped(cm: CacheManager) -> None:
    """The write re-checks that a chosen record still shows the filter what it did."""
    rid = _record(cm, description="old")
    work_rows: list[str] = []
    original = prune_module._Pass.same_filter_fields

    def changed(chosen, current):  # type: ignore[no-untyped-def]
        work_rows.append(current.id)
        current.description = "new"  # as if the row now said something else
        return original(chosen, current)

    pass_type = prune_module._Pass
    setattr(pass_type, "same_filter_fields", staticmethod(changed))  # noqa: B010
    try:
        assert cm.prune(PruneOptions(filters=("description==old",))) == []
    finally:
        setattr(pass_type, "same_filter_fields", staticmethod(original))  # noqa: B010
    assert work_rows == [rid]
    assert [u.id for u in cm.disk_usage()] == [rid]


# -- numbers and text past their limits ---------------------------------------------------


def test_force_release_out_of_range(cm: CacheManager) -> None:
    for bad in (2**70, -1, 0, 2**63):
        with pytest.raises(InvalidError, match="out of range"):
            cm.force_release(bad)


def test_lone_surrogate_in_a_description(cm: CacheManager) -> None:
    with pytest.raises(InvalidError, match=r"invalid description .*not valid Unicode"):
        cm.new(description="bad \udcff byte")
    assert cm.disk_usage() == [] and os.listdir(cm.snapshots.dir) == []
    # A pattern from undecodable command-line bytes is refused, naming why.
    with pytest.raises(FilterSyntaxError, match="not valid Unicode"):
        cm.disk_usage(["description~=\udcff"])
    assert cm.disk_usage(["description==\udcff"]) == []


def test_undecodable_filter_bytes_on_the_command_line(cm: CacheManager) -> None:
    _record(cm, description="x")
    cm.close()
    undecodable = os.fsdecode(b"description~=\xff")
    done = subprocess.run(
        [sys.executable, "-m", "cachetui", "du", "--root", str(cm.root), "--filter", undecodable],
        capture_output=True,
        env=child_env(),
        timeout=60,
    )
    assert done.returncode == 2 and b"Traceback" not in done.stderr
    assert b"not valid Unicode" in done.stderr and len(done.stderr.splitlines()) == 3


def test_name_too_long(tmp_path: Path) -> None:
    long_root = tmp_path / ("x" * 300) / "store"
    with pytest.raises(InvalidError, match="File name too long"):
        CacheManager.open(long_root)
    error = one_line_error(cli("du", "--root", str(long_root)), 2)
    assert "File name too long" in error
    assert not os.path.exists(tmp_path / ("x" * 200))


def test_empty_root_is_refused(tmp_path: Path) -> None:
    """``--root "$STORE"`` with STORE unset must not prune the default store."""
    default = tmp_path / "default"
    with CacheManager.open(default) as cm:
        rid = _record(cm)
    env = {**child_env(), "CACHETUI_ROOT": str(default)}
    for command in (["prune", "--all", "--force"], ["du"], ["doctor", "--fix"]):
        done = subprocess.run(
            [sys.executable, "-m", "cachetui", *command, "--root", ""],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        error = one_line_error(done, 2)
        assert "--root is empty" in error
    with CacheManager.open(default) as cm:
        assert [u.id for u in cm.disk_usage()] == [rid]


# -- clocks and stored timestamps ---------------------------------------------------------


@pytest.mark.parametrize("reading", [1e20, math.inf, -math.inf, -1e20, math.nan, "now", None])
def test_bad_clock_is_refused_before_anything_is_written(tmp_path: Path, reading: object) -> None:
    good = CacheManager.open(tmp_path / "s")
    _record(good)
    good.close()
    cm = CacheManager.open(tmp_path / "s", clock=lambda: reading)  # type: ignore[arg-type,return-value]
    with pytest.raises(InvalidError, match="invalid clock reading"):
        cm.new()
    assert len(cm.disk_usage()) == 1  # reading needs no clock
    cm.close()
    with CacheManager.open(tmp_path / "s") as again:
        assert len(again.disk_usage()) == 1
        assert os.listdir(again.snapshots.dir) == [again.disk_usage()[0].id]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("created_at", "'yesterday'"),
        ("created_at", "1e20"),
        ("created_at", "-1e20"),
        ("created_at", "9e999"),  # SQLite's infinity
        ("created_at", "NULL"),
        ("last_used_at", "'soon'"),
        ("last_used_at", "-9e999"),
    ],
)
def test_a_bad_stored_timestamp_never_crashes_a_read(
    cm: CacheManager, column: str, value: str
) -> None:
    bad = _record(cm, description="edited")
    good = _record(cm, description="fine", content=100)
    cm.close()
    db = sqlite3.connect(cm.root / "metadata.db")
    if value == "NULL":
        db.execute("PRAGMA ignore_check_constraints = 1")
        db.execute("CREATE TABLE r2 AS SELECT * FROM record")  # NOT NULL dropped
        db.execute("DROP TABLE record")
        db.execute("ALTER TABLE r2 RENAME TO record")
    if column == "created_at":  # never used: its age is its creation time
        db.execute("UPDATE record SET usage_count = 0, last_used_at = NULL WHERE id = ?", (bad,))
    db.execute(f"UPDATE record SET {column} = {value} WHERE id = ?", (bad,))
    db.commit()
    db.close()
    root = str(cm.root)
    with CacheManager.open(root) as again:
        rows = {u.id: u for u in again.disk_usage()}
        assert getattr(rows[bad], column) == UNKNOWN_TIME
        assert rows[good].created_at != UNKNOWN_TIME
        findings = [f for f in again.doctor() if f.kind == "bad-timestamp"]
        assert [(f.subject, column in f.message) for f in findings] == [(bad, True)]
        # keep_duration keeps a record whose age is unknown; an explicit prune still works.
        assert [u.id for u in again.prune(PruneOptions(keep_duration=3600))] == [good]
    shows = {"du": bad, "json": f'"{column}": null', "--verbose": "unknown", "doctor": bad}
    for command in (["du"], ["du", "--format", "json"], ["du", "--verbose"], ["doctor"]):
        done = cli(*command, "--root", root)
        assert "Traceback" not in done.stderr
        assert done.returncode == (1 if command == ["doctor"] else 0), done.stderr
        assert shows[command[-1]] in done.stdout, (command, done.stdout[-500:])
    with CacheManager.open(root) as again:
        assert [u.id for u in again.prune(PruneOptions(all=True))] == [bad]


# -- SQLite outside a transaction ---------------------------------------------------------


def test_deleted_wal_and_shm_give_a_store_error(cm: CacheManager) -> None:
    """Whatever SQLite says after its -wal/-shm files vanish, callers get StoreError."""
    _record(cm)
    for suffix in ("-wal", "-shm"):
        path = cm.root / f"metadata.db{suffix}"
        if path.exists():
            path.unlink()
    from cachetui.core import CacheError

    for call in (cm.disk_usage, cm.doctor, lambda: cm.new().release()):
        try:
            call()
        except CacheError:
            pass  # a clear error is fine; a raw sqlite3 error is not
    done = cli("du", "--root", str(cm.root))
    assert "Traceback" not in done.stderr


# -- names in every output ----------------------------------------------------------------


def test_names_are_escaped_in_every_output(cm: CacheManager) -> None:
    """A newline in a directory name must not start a new output line; an escape sequence
    must not reach the terminal; undecodable bytes must not crash the printing."""
    rid = _record(cm, description="line one\nFAKE LINE\x1b[31m red \x85 \u2028 done")
    os.mkdir(os.path.join(os.fsencode(cm.snapshots.dir), b"evil\nname\xff"))
    cm.close()
    root = str(cm.root)
    doctor = cli("doctor", "--root", root)
    assert "Traceback" not in doctor.stderr, doctor.stderr
    lines = doctor.stdout.splitlines()
    unknown = [line for line in lines if "evil" in line]
    assert len(unknown) == 1 and "evil\\nname\\xff" in unknown[0], lines
    assert not any(line.startswith("name") for line in lines)
    verbose = cli("du", "--verbose", "--root", root)
    assert verbose.returncode == 0, verbose.stderr
    described = [line for line in verbose.stdout.splitlines() if "line one" in line]
    assert described == ["Description: line one\\nFAKE LINE\\x1b[31m red \\x85 \\u2028 done"], (
        verbose.stdout
    )
    assert "\x1b" not in verbose.stdout and "FAKE LINE" not in verbose.stdout.split("\\n")[0]
    as_json = cli("du", "--format", "json", "--root", root)
    import json

    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [row["id"] for row in rows] == [rid]
    assert rows[0]["description"].startswith("line one\nFAKE LINE\x1b")
    assert "\x1b" not in as_json.stdout and "\x85" not in as_json.stdout
    for command in (["doctor", "--format", "json"],):
        done = cli(*command, "--root", root)
        assert "Traceback" not in done.stderr
        assert any("evil" in json.loads(line)["subject"] for line in done.stdout.splitlines())
