"""Damaged or surprising metadata never turns into data deletion."""

from __future__ import annotations

import ast
import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from cachetui.core import CacheManager, NotFoundError, PruneOptions, StoreError
from cachetui.core.ids import new_id
from cachetui.core.store import SCHEMA_VERSION
from tests.reliability.conftest import tree


def populate(root: Path) -> list[str]:
    """A chain of three finalized records plus on-disk leftovers that open would clean."""
    ids = []
    with CacheManager.open(root) as cm:
        parent = None
        for i in range(3):
            ref = cm.new(parent)
            (ref.mount().upper / f"f{i}").write_bytes(b"d" * 5000)
            imm = ref.commit()
            imm.finalize()
            ids.append(imm.id)
            parent = imm
    return ids


def damage(path: Path, how: str) -> None:
    if how == "garbage":
        path.write_bytes(os.urandom(16384))
    elif how == "truncated":
        os.truncate(path, 1000)
    elif how == "bad-header":
        with open(path, "r+b") as fh:
            fh.write(b"X")  # the "SQLite format 3" magic
    elif how == "empty-page-1":
        with open(path, "r+b") as fh:
            fh.seek(100)
            fh.write(b"\xff" * 400)


@pytest.mark.parametrize("how", ["garbage", "truncated", "bad-header", "empty-page-1"])
def test_unreadable_database_fails_open_and_touches_nothing(root: Path, how: str) -> None:
    """StoreError at open; no reconcile: new-*/rm-*/unknown dirs all stay."""
    populate(root)
    snapshots = root / "snapshots"
    (snapshots / "new-deadbeef").mkdir()
    (snapshots / f"rm-{new_id()}").mkdir()
    damage(root / "metadata.db", how)
    before = tree(snapshots)
    with pytest.raises(StoreError, match=r"metadata\.db"):
        CacheManager.open(root)
    assert tree(snapshots) == before


def corrupt_index(root: Path) -> None:
    """Break the ``record_parent`` index page: the database opens, quick_check fails."""
    db = sqlite3.connect(root / "metadata.db")
    query = "SELECT rootpage FROM sqlite_master WHERE name = 'record_parent'"
    (page,) = db.execute(query).fetchone()
    (size,) = db.execute("PRAGMA page_size").fetchone()
    db.close()
    with open(root / "metadata.db", "r+b") as fh:
        fh.seek((page - 1) * size)
        fh.write(b"\x0d")  # an index leaf that claims to be a table leaf


def test_integrity_errors_open_degraded(root: Path) -> None:
    """Opens, lists, doctor reports the messages; writes are refused; no repair ran
    (a record whose layer is missing would otherwise take its descendants' layers)."""
    ids = populate(root)
    os.rename(root / "snapshots" / ids[0], root / "elsewhere")  # open would drop the chain
    corrupt_index(root)
    before = tree(root / "snapshots")
    with CacheManager.open(root) as cm:
        assert cm.read_only
        assert [f.kind for f in cm.open_findings] == ["degraded"]
        assert {u.id for u in cm.disk_usage()} == set(ids)
        kinds = {f.kind for f in cm.doctor(fix=True)}
        assert {"degraded", "integrity"} <= kinds
        with pytest.raises(StoreError):
            cm.new()
        with pytest.raises(StoreError):
            cm.prune(PruneOptions(all=True))
        with pytest.raises(StoreError, match="damaged"):
            cm.get(ids[-1])
    assert tree(root / "snapshots") == before


def test_newer_schema_is_refused_without_writes(root: Path) -> None:
    """StoreError naming both versions; the database file is not changed."""
    populate(root)
    db = sqlite3.connect(root / "metadata.db")
    db.execute("UPDATE setting SET value = '999' WHERE key = 'schema_version'")
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    digest = hashlib.sha256((root / "metadata.db").read_bytes()).hexdigest()
    before = tree(root / "snapshots")
    with pytest.raises(StoreError, match=rf"999.*\({SCHEMA_VERSION}\)"):
        CacheManager.open(root)
    assert hashlib.sha256((root / "metadata.db").read_bytes()).hexdigest() == digest
    assert tree(root / "snapshots") == before


def test_row_without_snapshot_is_dropped_with_descendants(root: Path) -> None:
    """The record and its descendants go at open, with findings."""
    ids = populate(root)
    os.rename(root / "snapshots" / ids[1], root / "moved-away")
    with CacheManager.open(root) as cm:
        assert [u.id for u in cm.disk_usage()] == [ids[0]]
        dropped = {f.subject for f in cm.open_findings if f.kind == "missing-snapshot"}
        assert dropped == {ids[1], ids[2]}
        assert os.listdir(cm.snapshots.dir) == [ids[0]]
        with pytest.raises(NotFoundError):
            cm.get(ids[2])
        assert [f for f in cm.doctor() if not f.fixed] == []
    assert (root / "moved-away" / "f1").is_file()  # only what was inside snapshots/


def test_dangling_parent_row(root: Path) -> None:
    """A row whose parent row is gone: its layers cannot be mounted, so it is dropped
    at open like a record whose layer is missing, never leaking holders."""
    ids = populate(root)
    db = sqlite3.connect(root / "metadata.db")
    db.execute("DELETE FROM record WHERE id = ?", (ids[0],))
    db.commit()
    db.close()
    with CacheManager.open(root) as cm:
        assert cm.disk_usage() == []
        assert cm.store.rows("SELECT count(*) FROM holder") == [(0,)]
        # the parent's layer has no row now: reported, not deleted at open
        unfixed = [(f.kind, f.subject) for f in cm.doctor() if not f.fixed]
        assert unfixed == [("unknown-dir", ids[0])]


def test_snapshot_without_row_only_removed_by_doctor_fix(root: Path, cm: CacheManager) -> None:
    """Reported as unknown-dir; kept at open; removed by doctor(fix=True) only when it
    is an id-named directory; other names and symlinks are left alone."""
    orphan = cm.snapshots.dir / new_id()
    orphan.mkdir()
    (orphan / "data").write_bytes(b"o" * 100)
    junk = cm.snapshots.dir / "not-a-layer"
    junk.mkdir()
    link = cm.snapshots.dir / new_id()
    os.symlink(root.parent, link)
    cm.close()
    with CacheManager.open(root) as again:
        assert orphan.is_dir() and junk.is_dir() and link.is_symlink()
        found = {f.subject: f for f in again.doctor()}
        assert {found[n].kind for n in (orphan.name, junk.name, link.name)} == {"unknown-dir"}
        fixed = {f.subject: f.fixed for f in again.doctor(fix=True) if f.kind == "unknown-dir"}
        assert fixed == {orphan.name: True, junk.name: False, link.name: False}
        assert not orphan.exists() and junk.is_dir() and link.is_symlink()
        assert root.parent.is_dir()


def test_code_never_opens_the_database_file_directly() -> None:
    """No ``open()`` of metadata.db anywhere in the package (SQLite's POSIX-lock
    hazard); the database lives outside snapshots/, so measuring never sees it."""
    package = Path(__file__).resolve().parents[2] / "cachetui"
    offenders = []
    for path in package.rglob("*.py"):
        source = path.read_text()
        if "metadata.db" not in source:
            continue
        for node in ast.walk(ast.parse(source)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name | ast.Attribute)
                and getattr(node.func, "id", getattr(node.func, "attr", "")) == "open"
                and node.args
            ):
                text = ast.get_source_segment(source, node.args[0]) or ""
                if "devnull" not in text and ("db" in text or "metadata" in text):
                    offenders.append(f"{path}:{node.lineno}: {text}")
    assert offenders == []


def test_database_is_outside_the_measured_tree(cm: CacheManager) -> None:
    """A layer's size never counts the database: it lives outside snapshots/."""
    db = Path(cm.store.path).resolve()
    assert cm.snapshots.dir.resolve() not in db.parents


def test_network_filesystem_is_reported(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store on NFS/SMB gets a warning finding at open (the fs-type probe is
    monkeypatched). The journal-mode fallback and refusing concurrent writers are not
    implemented: the warning tells the operator to use the store from one host."""
    from cachetui.core import filesystems

    assert filesystems.filesystem_type("/proc/self") == "proc"
    monkeypatch.setattr(filesystems, "filesystem_type", lambda path: "nfs4")
    with CacheManager.open(root) as cm:
        [finding] = cm.open_findings
        assert finding.kind == "network-filesystem" and "nfs4" in finding.message
        assert finding in cm.doctor()
