"""Nothing is deleted that nobody asked to delete: reads, fixes and other processes.

Each test holds a canary outside the store (real files, real processes, real SQLite)
and the bytes of every layer it made, and proves them untouched after what a user did:

* a read (``du``, ``doctor`` without ``--fix``, a read-only open) changes no row, no
  holder and no snapshot byte, and never waits for the write lock;
* a store that looks unmounted is refused ("is the disk mounted?"), nothing created;
* damaged metadata (an empty file, a flipped byte, random bytes in the record table,
  rows that contradict each other) opens read-only and ``doctor --rebuild`` rebuilds it
  without deleting a byte, keeping the damaged file;
* ``doctor --fix`` racing a build loses no finalized record;
* a manager already open sees another process's crash for what it is;
* a symlinked ``snapshots/`` or ``lost+found/`` is refused at open.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cachetui.core import CacheManager, NotFoundError, PruneOptions, StoreError
from cachetui.core.ids import new_id
from cachetui.core.rebuild import rebuild
from tests.reliability.conftest import Child, run_worker, tree

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A directory outside the store whose files must survive everything."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "canary").write_bytes(b"alive" * 1000)
    return outside


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("CACHETUI_CRASH_AT", None)
    return subprocess.run(
        [sys.executable, "-m", "cachetui", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def make_store(root: Path, count: int, *, chain: int = 3) -> list[str]:
    """``count`` finalized records (the first ``chain`` stacked), each with a file."""
    ids: list[str] = []
    with CacheManager.open(root) as cm:
        parent = None
        for i in range(count):
            ref = cm.new(parent if 0 < i < chain else None, description=f"layer-{i}")
            (ref.mount().upper / "data").write_bytes(bytes([i % 256]) * (4096 + i))
            imm = ref.commit()
            imm.finalize()
            ids.append(imm.id)
            if parent is not None:
                parent.release()
            parent = imm
        if parent is not None:
            parent.release()
    return ids


def rows(root: Path) -> list[tuple]:
    """Every record and holder row, read with plain sqlite3 (no cachetui code)."""
    db = sqlite3.connect(f"file:{root / 'metadata.db'}?mode=ro", uri=True)
    try:
        return (
            db.execute("SELECT * FROM record ORDER BY id").fetchall()
            + db.execute("SELECT * FROM holder ORDER BY id").fetchall()
        )
    finally:
        db.close()


def layer_bytes(root: Path, ids: list[str]) -> dict[str, str]:
    """A digest of each record's file, wherever the store put it."""
    found = {}
    for rid in ids:
        for base in (root / "snapshots", root / "lost+found"):
            path = base / rid / "data"
            if path.is_file():
                found[rid] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


# -- reads change nothing -----------------------------------------------------------------


def test_reads_change_nothing_and_never_wait_for_the_write_lock(root: Path, canary: Path) -> None:
    """``du``, ``doctor`` and a read-only open leave crash leftovers, a dead holder and a
    tombstone exactly as they are, even while another process holds the write lock."""
    ids = make_store(root, 4)
    # what a crashed process leaves: a staging dir, a tombstone, a dead holder
    (root / "snapshots" / "new-0123456789abcdef").mkdir()
    db = sqlite3.connect(root / "metadata.db")
    db.execute("UPDATE record SET deleted = 1 WHERE id = ?", (ids[-1],))
    db.execute(
        "INSERT INTO holder (record, pid, start, host, created_at, counts_use) "
        "VALUES (?, 999999, 'x', 'nowhere', 0, 1)",
        (ids[0],),
    )
    db.commit()
    db.close()
    before_rows, before_canary = rows(root), tree(canary)
    before_tree = tree(root / "snapshots")
    # SQLite's own -wal/-shm come and go with connections; nothing else may appear.
    sqlite_files = {"metadata.db-shm", "metadata.db-wal"}
    before_files = set(os.listdir(root)) - sqlite_files
    locker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"db = sqlite3.connect({str(root / 'metadata.db')!r}, isolation_level=None)\n"
            "db.execute('BEGIN IMMEDIATE')\nprint('locked', flush=True)\ntime.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        started = time.monotonic()
        du = cli("du", "--root", str(root), "--format", "json", timeout=30)
        assert du.returncode == 0, du.stderr
        assert len(du.stdout.splitlines()) == 3  # the tombstoned record is not listed
        doctor = cli("doctor", "--root", str(root), "--format", "json", timeout=30)
        assert doctor.returncode == 1 and "tombstone" in doctor.stdout, doctor.stderr
        with CacheManager.open(root, read_only=True) as cm:
            assert len(cm.disk_usage()) == 3
        # far below SQLite's 60 s busy timeout: nothing waited for the lock
        assert time.monotonic() - started < 30
    finally:
        locker.kill()
        locker.wait()
    assert rows(root) == before_rows
    assert tree(root / "snapshots") == before_tree
    assert set(os.listdir(root)) - sqlite_files == before_files
    assert tree(canary) == before_canary


def test_looks_write_nothing_not_an_upgrade_nor_a_measured_size(root: Path) -> None:
    """``du``, ``doctor``, ``prune --dry-run`` and ``gc --dry-run`` on a store of the
    previous schema whose sizes are unknown and whose last prune crashed: the file's
    bytes stay as they were (no upgrade that an older cachetui would then refuse, no
    cached size, no finished removal), and a real write open then upgrades it."""
    from cachetui.core.store import SCHEMA_VERSION

    ids = make_store(root, 4)
    db = sqlite3.connect(root / "metadata.db")
    db.execute("DROP INDEX IF EXISTS record_usage")
    db.execute(
        "UPDATE setting SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION - 1),)
    )
    db.execute("UPDATE record SET size = -1")
    # A prune that crashed after its commit: the row is tombstoned, the layer renamed.
    db.execute("UPDATE record SET deleted = 1 WHERE id = ?", (ids[-1],))
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    (root / "snapshots" / ids[-1]).rename(root / "snapshots" / f"rm-{ids[-1]}")
    policy = root.parent / "all.toml"
    policy.write_text("[[tier]]\nall = true\n")

    def digest() -> str:
        return hashlib.sha256((root / "metadata.db").read_bytes()).hexdigest()

    before, before_tree = digest(), tree(root / "snapshots")
    before_files = set(os.listdir(root)) - {"metadata.db-shm", "metadata.db-wal"}
    for look in (
        ["du", "--root", str(root)],
        ["doctor", "--root", str(root)],
        ["prune", "--root", str(root), "--all", "--dry-run"],
        ["gc", "--root", str(root), "--policy", str(policy), "--dry-run"],
    ):
        done = cli(*look)
        assert "Traceback" not in done.stderr, done.stderr
        assert done.returncode in (0, 1), (look, done.stderr)
        assert digest() == before, f"{look[0]} changed metadata.db"
        assert tree(root / "snapshots") == before_tree, f"{look[0]} changed snapshots/"
        assert set(os.listdir(root)) - {"metadata.db-shm", "metadata.db-wal"} == before_files
    du = cli("du", "--root", str(root), "--format", "json")
    assert du.returncode == 0 and len(du.stdout.splitlines()) == 3
    assert '"size": 0' not in du.stdout  # measured for the answer, just not kept
    # A real open upgrades it and finishes the crashed removal.
    with CacheManager.open(root) as cm:
        assert cm.store.schema_version == SCHEMA_VERSION
        assert len(cm.disk_usage()) == 3
    assert not (root / "snapshots" / f"rm-{ids[-1]}").exists()


# -- a store that looks unmounted --------------------------------------------------------


def test_unmounted_snapshots_are_refused_and_nothing_is_forgotten(
    root: Path, tmp_path: Path, canary: Path
) -> None:
    """The disk is not mounted yet (``snapshots/`` moved away): du refuses with "is the
    disk mounted?", drops nothing and creates nothing; once it is back, every record and
    byte is there and ``doctor --fix`` moves or deletes nothing."""
    ids = make_store(root, 14)
    digests = layer_bytes(root, ids)
    before_rows = rows(root)
    away = tmp_path / "unmounted"
    os.rename(root / "snapshots", away)
    for command in (["du"], ["doctor"], ["doctor", "--fix"], ["prune", "--all", "--force"]):
        done = cli(*command, "--root", str(root))
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert "14 of 14 layers are missing" in done.stderr and "is the disk mounted?" in (
            done.stderr
        )
        assert not (root / "snapshots").exists() and not (root / "lost+found").exists()
    with pytest.raises(StoreError, match="is the disk mounted"):
        CacheManager.open(root, read_only=True)
    assert rows(root) == before_rows
    os.rename(away, root / "snapshots")
    done = cli("doctor", "--fix", "--root", str(root))
    assert done.returncode == 0, done.stdout + done.stderr
    with CacheManager.open(root) as cm:
        assert {u.id for u in cm.disk_usage()} == set(ids)
    assert layer_bytes(root, ids) == digests and not (root / "lost+found").exists()
    assert tree(canary)["canary"][1] == 5000


def test_more_than_half_missing_is_refused_until_forget_missing(root: Path, tmp_path: Path) -> None:
    """8 of 10 layers gone: refused. ``doctor --fix --forget-missing`` lists and forgets
    exactly the missing records; the two layers left keep their bytes."""
    ids = make_store(root, 10, chain=1)
    gone = tmp_path / "gone"
    gone.mkdir()
    for rid in ids[:8]:
        os.rename(root / "snapshots" / rid, gone / rid)
    with pytest.raises(StoreError, match=r"8 of 10 layers are missing under .*mounted\?"):
        CacheManager.open(root)
    refused = cli("doctor", "--fix", "--root", str(root))
    assert refused.returncode == 1 and "--forget-missing" in refused.stderr
    usage = cli("doctor", "--forget-missing", "--root", str(root))
    assert usage.returncode == 2
    done = cli("doctor", "--fix", "--forget-missing", "--root", str(root), "--format", "json")
    assert done.returncode == 0, done.stderr
    assert {rid for rid in ids[:8] if rid in done.stdout} == set(ids[:8])  # listed
    with CacheManager.open(root) as cm:
        assert {u.id: u.health for u in cm.disk_usage()} == {rid: "ok" for rid in ids[8:]}
    assert set(layer_bytes(root, ids)) == set(ids[8:])
    assert sorted(os.listdir(gone)) == sorted(ids[:8])  # what was moved out: untouched


def test_a_new_store_is_still_created(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    with CacheManager.open(root) as cm:
        assert cm.disk_usage() == []
    empty = tmp_path / "empty"
    empty.mkdir()
    with CacheManager.open(empty) as cm:
        assert (empty / "snapshots").is_dir() and (empty / "metadata.db").is_file()


# -- metadata damage never becomes deleted data -----------------------------------------


def test_truncated_metadata_opens_read_only_and_rebuild_recovers(root: Path) -> None:
    """``truncate -s 0 metadata.db``: no fresh schema, no deletion by ``doctor --fix``;
    ``doctor --rebuild`` gives every layer a record again and keeps the empty file."""
    ids = make_store(root, 30)
    digests = layer_bytes(root, ids)
    for suffix in ("-wal", "-shm"):
        Path(f"{root / 'metadata.db'}{suffix}").unlink(missing_ok=True)
    os.truncate(root / "metadata.db", 0)
    du = cli("du", "--root", str(root))
    assert du.returncode == 0, du.stderr
    fix = cli("doctor", "--fix", "--root", str(root))
    assert fix.returncode == 1 and "rebuild" in fix.stdout, fix.stdout + fix.stderr
    assert os.path.getsize(root / "metadata.db") == 0
    assert layer_bytes(root, ids) == digests
    with CacheManager.open(root) as cm:
        assert cm.read_only
        with pytest.raises(StoreError, match="damaged"):
            cm.new()
    done = cli("doctor", "--rebuild", "--root", str(root), "--format", "json")
    assert done.returncode == 1, done.stderr  # it says what could not be recovered
    assert "metadata.db.damaged-" in done.stdout
    with CacheManager.open(root) as cm:
        assert not cm.read_only and {u.id for u in cm.disk_usage()} == set(ids)
        assert [f for f in cm.doctor() if not f.fixed] == []
    assert layer_bytes(root, ids) == digests
    [kept] = root.glob("metadata.db.damaged-*")
    assert kept.stat().st_size == 0


def test_damaged_metadata_never_reads_as_an_empty_store(root: Path, canary: Path) -> None:
    """``truncate -s 0 metadata.db`` lists no record while every layer is on disk: ``du``
    says on stderr that the listing is partial (an empty table alone reads as an empty
    store, an invitation to ``rm -rf`` it), and ``prune`` names the damage, not a
    read-only flag nobody passed. Nothing is deleted, inside the store or outside."""
    ids = make_store(root, 6)
    digests = layer_bytes(root, ids)
    outside = tree(canary)
    os.truncate(root / "metadata.db", 0)
    du = cli("du", "--root", str(root))
    assert du.returncode == 0, du.stderr
    assert not any(rid in du.stdout for rid in ids)
    assert "warning:" in du.stderr and "is damaged" in du.stderr, du.stderr
    assert "doctor --rebuild" in du.stderr, du.stderr
    json_du = cli("du", "--root", str(root), "--format", "json")
    assert json_du.stdout == "" and "is damaged" in json_du.stderr, json_du.stderr
    pruned = cli("prune", "--all", "--force", "--root", str(root))
    assert pruned.returncode == 1, pruned.stdout
    assert "open read-only because metadata store" in pruned.stderr, pruned.stderr
    assert os.path.getsize(root / "metadata.db") == 0
    assert layer_bytes(root, ids) == digests
    assert tree(canary) == outside


def test_du_table_names_missing_and_broken_records(root: Path, tmp_path: Path) -> None:
    """A record whose layer is gone shows 0 B in ``du``'s table: its FLAGS say
    ``missing``, and its descendants' say ``broken``, as ``--format json`` does."""
    ids = make_store(root, 4, chain=3)  # ids[0] <- ids[1] <- ids[2]; ids[3] alone
    shutil.move(root / "snapshots" / ids[0], tmp_path / "away")
    du = cli("du", "--root", str(root))
    assert du.returncode == 0, du.stderr
    line = {rid: next(x for x in du.stdout.splitlines() if x.startswith(rid)) for rid in ids}
    assert line[ids[0]].rstrip().endswith("missing"), du.stdout
    assert line[ids[1]].rstrip().endswith("broken") and line[ids[2]].rstrip().endswith("broken")
    assert not line[ids[3]].rstrip().endswith(("missing", "broken")), du.stdout
    assert {row[0] for row in rows(root)} >= set(ids)  # a read forgets nothing


def test_a_layer_replaced_by_a_symlink_is_missing_not_healthy(
    root: Path, tmp_path: Path, canary: Path
) -> None:
    """A layer directory replaced by a symlink (here to a directory outside the store)
    holds none of the record's bytes: ``du`` says missing and broken below it, as for a
    layer that is gone, ``doctor`` does not call the store clean, and neither follows the
    link nor touches what it points at."""
    ids = make_store(root, 4, chain=3)  # ids[0] <- ids[1] <- ids[2]; ids[3] alone
    layer = root / "snapshots" / ids[0]
    shutil.move(layer, tmp_path / "away")
    layer.symlink_to(canary)
    du = cli("du", "--root", str(root))
    assert du.returncode == 0, du.stderr
    line = {rid: next(x for x in du.stdout.splitlines() if x.startswith(rid)) for rid in ids}
    assert line[ids[0]].rstrip().endswith("missing"), du.stdout
    assert line[ids[1]].rstrip().endswith("broken") and line[ids[2]].rstrip().endswith("broken")
    assert not line[ids[3]].rstrip().endswith(("missing", "broken")), du.stdout
    doctor = cli("doctor", "--root", str(root))
    assert "clean" not in doctor.stdout.lower(), doctor.stdout
    assert ids[0] in doctor.stdout + doctor.stderr
    assert layer.is_symlink()  # a read changes nothing
    assert (canary / "canary").read_bytes() == b"alive" * 1000


def flip_parent_byte(root: Path, rid: str) -> None:
    """Flip one byte of a record's stored parent id in the table's page (not the index)."""
    db = sqlite3.connect(root / "metadata.db")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (parent,) = db.execute("SELECT parent FROM record WHERE id = ?", (rid,)).fetchone()
    (table_page,) = db.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'record'"
    ).fetchone()
    (page_size,) = db.execute("PRAGMA page_size").fetchone()
    db.close()
    data = bytearray((root / "metadata.db").read_bytes())
    needle = rid.encode() + parent.encode()
    at = data.find(needle)
    assert at > 0, "row layout not found"
    assert at // page_size + 1 >= table_page
    spot = at + len(rid) + 3
    data[spot] = ord("a") if data[spot] != ord("a") else ord("b")
    (root / "metadata.db").write_bytes(bytes(data))


def test_flipped_parent_byte_is_caught_before_any_repair(root: Path) -> None:
    """One flipped byte in a stored parent id passes ``quick_check``; the rows then
    contradict each other (and ``integrity_check`` fails): read-only, nothing deleted by
    du, doctor or doctor --fix; ``doctor --rebuild`` recovers every layer."""
    ids = make_store(root, 5, chain=5)
    digests = layer_bytes(root, ids)
    flip_parent_byte(root, ids[3])
    before = tree(root / "snapshots")
    for command in (["du"], ["doctor"], ["doctor", "--fix"], ["du"]):
        done = cli(*command, "--root", str(root))
        assert "Traceback" not in done.stderr, done.stderr
    assert tree(root / "snapshots") == before
    with CacheManager.open(root) as cm:
        assert cm.read_only
    cli("doctor", "--rebuild", "--root", str(root))
    with CacheManager.open(root) as cm:
        assert not cm.read_only
        assert {u.id for u in cm.disk_usage()} >= set(ids)
    assert layer_bytes(root, ids) == digests


@pytest.mark.parametrize("seed", range(12))
def test_random_bytes_in_the_record_table_delete_nothing(root: Path, seed: int) -> None:
    """Random bytes over the record table's pages: every command afterwards (du,
    doctor, doctor --fix, a writable open, prune) deletes no layer it was not asked to,
    and ``doctor --rebuild`` brings every layer back as a record."""
    ids = make_store(root, 12)
    digests = layer_bytes(root, ids)
    db = sqlite3.connect(root / "metadata.db")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (table_page,) = db.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'record'"
    ).fetchone()
    (page_size,) = db.execute("PRAGMA page_size").fetchone()
    db.close()
    rng = random.Random(seed)
    with open(root / "metadata.db", "r+b") as fh:
        # the rows themselves: the cell content area of the table's (single) leaf page
        base = (table_page - 1) * page_size
        fh.seek(base)
        header = fh.read(8)
        assert header[0] == 0x0D, "the record table is one leaf page"
        content = int.from_bytes(header[5:7], "big")
        for _ in range(3):
            fh.seek(base + rng.randrange(content, page_size - 16))
            fh.write(rng.randbytes(rng.randrange(1, 16)))
    # the CLI's du, doctor and doctor --fix, in process (each is one open and one call)
    for repair, fix in ((False, False), (False, False), (True, True)):
        try:
            with CacheManager.open(root, repair=repair) as cm:
                # the rows as du reads them (du's date rendering of a garbage
                # timestamp is another matter: bad values shown as placeholders)
                cm.state()
                cm.doctor(fix=fix)
        except StoreError:
            pass  # unreadable: refused at open, nothing touched
    try:
        with CacheManager.open(root) as cm:
            if not cm.read_only:
                # the damage missed every row that matters: a prune whose filter matches
                # nothing is asked for, and must remove nothing
                assert cm.prune(PruneOptions(filters=("id==" + "z" * 25,))) == []
    except StoreError:
        pass  # unreadable: refused at open, nothing touched
    assert layer_bytes(root, ids) == digests
    rebuild(root)
    with CacheManager.open(root) as cm:
        listed = {u.id for u in cm.disk_usage()}
    assert set(ids) <= listed
    assert layer_bytes(root, ids) == digests


# -- doctor --fix racing a build ----------------------------------------------------------


def test_doctor_fix_racing_a_build_loses_no_record(root: Path, canary: Path) -> None:
    """A real second process creates records in a loop while ``doctor --fix`` runs again
    and again in other processes: every finalized record keeps its row and its file."""
    make_store(root, 2)
    builder = Child("build-loop", root, "150")
    finalized: list[str] = []
    runs = 0
    try:
        while True:
            code, events = run_worker("doctor-fix", root, "3")
            runs += 1
            assert code == 0
            assert not [e for e in events if e["event"] == "moved"], events
            event = builder.event()
            while event["event"] == "finalized":
                finalized.append(event["id"])
                if len(finalized) % 10:
                    event = builder.event()
                else:
                    break
            if event["event"] == "done":
                break
    finally:
        builder.finish()
    assert runs >= 5 and len(finalized) == 150
    with CacheManager.open(root) as cm:
        listed = {u.id: u for u in cm.disk_usage()}
        for rid in finalized:
            assert rid in listed and listed[rid].health == "ok", rid
            assert (cm.snapshots.path(rid) / "out").stat().st_size == 2048
    assert not (root / "lost+found").exists()
    assert tree(canary)["canary"][1] == 5000


# -- a crash seen by a manager that is already open ---------------------------------------


def test_crash_mid_finalize_seen_by_an_open_manager(root: Path) -> None:
    """Another process dies after renaming the layer, before its rows commit: the open
    manager reports the real size, hands out a handle whose layer exists, and releasing
    it deletes nothing."""
    with CacheManager.open(root) as cm:
        code, events = run_worker("finalize", root, crash_at="finalize:renamed")
        assert code == 137
        committed, mutable = events[0]["id"], events[0]["mutable"]
        [info] = cm.disk_usage()
        assert info.size >= 8192 and info.health == "ok"
        ref = cm.get(info.id)
        assert ref.id == committed
        [layer] = ref.mount().lowers
        assert (layer / "data").stat().st_size == 8192
        ref.release()
        assert [(u.id, u.health) for u in cm.disk_usage()] == [(committed, "ok")]
        assert (cm.snapshots.path(committed) / "data").is_file()
        assert not cm.snapshots.path(mutable).exists()
        assert [f for f in cm.doctor() if not f.fixed] == []


@pytest.mark.parametrize("point", ["prune:tombstoned", "release:tombstoned"])
def test_crash_inside_a_removal_seen_by_an_open_manager(root: Path, point: str) -> None:
    """Another process dies inside a removal's transaction (layers renamed ``rm-*``, the
    tombstones never committed): the open manager still sees the bytes, and a handle
    gets the layer back under its name."""
    with CacheManager.open(root) as cm:
        if point.startswith("prune"):
            ids = make_store(root, 3, chain=1)
            code, _ = run_worker("prune", root, crash_at=point)
        else:
            code, events = run_worker("release", root, crash_at=point)
            ids = [events[0]["id"]]
        assert code == 137
        assert any(n.startswith("rm-") for n in os.listdir(cm.snapshots.dir))
        info = {u.id: u for u in cm.disk_usage()}
        assert set(ids) <= set(info)
        assert all(info[rid].size > 0 and info[rid].health == "ok" for rid in ids)
        if point.startswith("prune"):
            with cm.get(ids[0]) as ref:
                assert (ref.mount().lowers[0] / "data").is_file()
        else:
            with cm.get_mutable(ids[0]) as ref:
                assert ref.mount().upper is not None and (ref.mount().upper / "data").is_file()


def test_missing_layer_handle_is_refused_and_release_deletes_nothing(
    root: Path, canary: Path
) -> None:
    """A record whose layer vanished: no handle (NotFoundError names the path); prune
    removes only its row and the child's existing layer, as asked."""
    ids = make_store(root, 4, chain=2)
    shutil.rmtree(root / "snapshots" / ids[0])
    with CacheManager.open(root) as cm:
        with pytest.raises(NotFoundError, match=str(root / "snapshots" / ids[0])):
            cm.get(ids[0])
        with pytest.raises(NotFoundError, match=ids[0]):
            cm.get(ids[1])
        health = {u.id: u.health for u in cm.disk_usage(["health!=ok"])}
        assert health == {ids[0]: "missing", ids[1]: "broken"}
        assert all(u.reclaimable for u in cm.disk_usage(["health!=ok"]))
        pruned = {u.id for u in cm.prune(PruneOptions(all=True, filters=("health!=ok",)))}
        assert pruned == {ids[0], ids[1]}
        assert sorted(os.listdir(cm.snapshots.dir)) == sorted(ids[2:])
    assert tree(canary)["canary"][1] == 5000


# -- the store's own directories are never links -------------------------------------------


@pytest.mark.parametrize("which", ["snapshots", "lost+found"])
def test_symlinked_store_directory_is_refused(root: Path, canary: Path, which: str) -> None:
    """``snapshots/`` (or ``lost+found/``) as a link into a directory holding staging,
    trash and id-named entries: refused at open, the target untouched."""
    ids = make_store(root, 2)
    (canary / "new-0011223344556677").mkdir()
    (canary / f"rm-{new_id()}").mkdir()
    (canary / new_id()).mkdir()
    if which == "snapshots":
        os.rename(root / "snapshots", root / "real-snapshots")
        os.symlink(canary, root / "snapshots")
    else:
        os.symlink(canary, root / "lost+found")
        (root / "snapshots" / new_id()).mkdir()  # something doctor --fix would move
    before = tree(canary)
    with pytest.raises(StoreError, match="symbolic link"):
        CacheManager.open(root)
    for command in (["du"], ["doctor", "--fix"], ["prune", "--all", "--force"]):
        done = cli(*command, "--root", str(root))
        assert done.returncode == 1 and "symbolic link" in done.stderr, done.stderr
    assert tree(canary) == before
    assert len(ids) == 2
