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


def test_row_without_snapshot_is_kept_missing_with_broken_descendants(root: Path) -> None:
    """Opening never forgets a record. The record whose layer is gone is
    listed "missing" (size 0), its descendant "broken"; a read changes nothing; only
    doctor --fix forgets them, after listing them, and the layer that does exist goes
    to lost+found, never deleted."""
    ids = populate(root)
    with CacheManager.open(root) as cm:  # one more healthy chain keeps the store mounted
        extra = populate_one(cm)
    os.rename(root / "snapshots" / ids[1], root / "moved-away")
    before = tree(root / "snapshots")
    with CacheManager.open(root) as cm:
        health = {u.id: (u.health, u.size) for u in cm.disk_usage()}
        assert health[ids[1]] == ("missing", 0) and health[ids[2]][0] == "broken"
        assert health[ids[0]][0] == "ok" and health[extra][0] == "ok"
        with pytest.raises(NotFoundError, match=ids[1]):
            cm.get(ids[2])
        report = {(f.kind, f.subject) for f in cm.doctor() if not f.fixed}
        assert report == {("missing-layer", ids[1]), ("broken", ids[2])}
        assert tree(root / "snapshots") == before
        fixed = {(f.kind, f.subject) for f in cm.doctor(fix=True) if f.fixed}
        assert {("missing-layer", ids[1]), ("broken", ids[2]), ("unknown-dir", ids[2])} <= fixed
        assert {u.id for u in cm.disk_usage()} == {ids[0], extra}
        assert (root / "lost+found" / ids[2] / "f2").is_file()  # moved, not deleted
    assert (root / "moved-away" / "f1").is_file()  # only what was inside snapshots/


def populate_one(cm: CacheManager) -> str:
    ref = cm.new()
    (ref.mount().upper / "g").write_bytes(b"g" * 5000)
    imm = ref.commit()
    imm.finalize()
    imm.release()
    return imm.id


def test_dangling_parent_row(root: Path) -> None:
    """A row whose parent row is gone is damage: the store opens
    read-only, nothing is dropped or deleted, and doctor --rebuild makes it whole again
    (the parent's layer gets a record of its own) while deleting nothing."""
    from cachetui.core.rebuild import rebuild

    ids = populate(root)
    db = sqlite3.connect(root / "metadata.db")
    db.execute("DELETE FROM record WHERE id = ?", (ids[0],))
    db.commit()
    db.close()
    before = tree(root / "snapshots")
    with CacheManager.open(root) as cm:
        assert cm.read_only and [f.kind for f in cm.open_findings] == ["degraded"]
        assert {u.id for u in cm.disk_usage()} == {ids[1], ids[2]}
        assert any("has no row" in m for m in cm.store.damaged)
        with pytest.raises(StoreError, match="read-only"):
            cm.prune(PruneOptions(all=True))
        kinds = {f.kind for f in cm.doctor(fix=True)}
        assert "damaged" in kinds
    assert tree(root / "snapshots") == before
    findings = rebuild(root)
    assert [f.subject for f in findings if f.kind == "unrecovered"] == [ids[0]]
    assert tree(root / "snapshots") == before
    assert list(root.glob("metadata.db.damaged-*"))
    with CacheManager.open(root) as cm:
        assert not cm.read_only
        assert {u.id: u.health for u in cm.disk_usage()} == {i: "ok" for i in ids}
        with cm.get(ids[2]) as ref:
            assert len(ref.mount().lowers) == 3  # its own layer and both ancestors


def test_snapshot_without_row_only_removed_by_doctor_fix(root: Path, cm: CacheManager) -> None:
    """Reported as unknown-dir; kept at open; moved to lost+found by doctor(fix=True)
    (never deleted) only when it is an id-named directory; other names and symlinks are
    left alone."""
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
        assert (root / "lost+found" / orphan.name / "data").read_bytes() == b"o" * 100
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


def test_a_dangling_parent_is_a_root_for_the_effective_age(root: Path) -> None:
    """The GC plan's "why is it still here" walks up to the newest use below a parent;
    a record whose parent row is missing is a root there, never a KeyError."""
    from cachetui.core.effective_age import NewestInSubtrees, newest_in_subtrees

    ids = populate(root)
    db = sqlite3.connect(root / "metadata.db")
    db.execute("DELETE FROM record WHERE id = ?", (ids[0],))
    db.commit()
    db.close()
    with CacheManager.open(root) as cm:
        assert cm.read_only  # damaged: a dry run still reads
        result = cm.gc_plan([PruneOptions(all=True, filters=(f"id=={ids[1]}",))])
        kept = result.tiers[0].kept
        assert kept[ids[1]].kind == "parent"
        assert kept[ids[2]].kind == "filter"
        state = cm._context.state()
        whole = newest_in_subtrees(state)
        lazy = NewestInSubtrees(state)
        assert ids[0] not in whole
        for rid in (ids[1], ids[2]):
            assert whole[rid] == lazy.get(rid)
        assert cm.records()[ids[1]].effective_at == whole[ids[1]][0]


@pytest.mark.parametrize("value", ["2", "'x'", "-1"])
@pytest.mark.parametrize("keep_picture", [False, True])
def test_deleted_flag_neither_0_nor_1(root: Path, value: str, keep_picture: bool) -> None:
    """A ``deleted`` value other than 0 or 1 hides a row from every live read without
    making it a tombstone: a prune would take its parent's layer, a fix its own. It is
    damage, like a dangling parent: the store opens read-only naming the row, doctor
    reports it, and nothing is removed or moved."""
    ids = populate(root)
    db = sqlite3.connect(root / "metadata.db")
    db.execute(f"UPDATE record SET deleted = {value} WHERE id = ?", (ids[2],))
    db.commit()
    db.close()
    before = tree(root / "snapshots")
    with CacheManager.open(root, keep_picture=keep_picture) as cm:
        assert cm.read_only and [f.kind for f in cm.open_findings] == ["degraded"]
        assert any(f"record {ids[2]}: its deleted flag is" in m for m in cm.store.damaged)
        with pytest.raises(StoreError, match="read-only"):
            cm.prune(PruneOptions(all=True))
        found = cm.doctor(fix=True)
        assert any(ids[2] in f.message for f in found if f.kind == "damaged"), found
    assert tree(root / "snapshots") == before
    assert not (root / "lost+found").exists() or not os.listdir(root / "lost+found")
    # a read-only open (du, plain doctor) names it too
    with CacheManager.open(root, read_only=True) as cm:
        found = cm.doctor()
        assert any(
            f.kind == "damaged" and f"record {ids[2]}: its deleted flag is" in f.message
            for f in found
        ), found
        assert ids[2] not in {f.subject for f in found if f.kind == "unknown-dir"}


@pytest.mark.parametrize("stored", ["CAST(parent AS BLOB)", "X'00ff'", "42"])
def test_an_id_column_that_is_not_text_lists_without_a_traceback(
    tmp_path: Path, stored: str
) -> None:
    """A blob or a number where a parent id belongs: the store opens read-only as damaged,
    and every listing (filtered, JSON, verbose) and dry run says so, never a traceback."""
    import subprocess
    import sys

    root = tmp_path / "store"
    with CacheManager.open(root) as cm:
        parent = cm.new(description="parent").commit()
        parent.finalize()
        child = cm.new(parent, description="child").commit()
        child.finalize()
        child_id = child.id
        child.release()
        parent.release()
    db = sqlite3.connect(root / "metadata.db")
    db.execute(f"UPDATE record SET parent = {stored} WHERE id = ?", (child_id,))
    db.commit()
    db.close()
    layers = sorted(p.name for p in (root / "snapshots").iterdir())
    for args in (
        ["du", "--filter", "type=regular"],
        ["du", "--format", "json"],
        ["du", "--verbose"],
        ["prune", "--dry-run", "--filter", "type=regular"],
        ["prune", "--all", "--force"],
        ["doctor"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "cachetui", *args, "--root", str(root)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "Traceback" not in done.stderr, (args, done.stderr)
        assert done.returncode in (0, 1), (args, done.returncode, done.stderr)
    assert sorted(p.name for p in (root / "snapshots").iterdir()) == layers
