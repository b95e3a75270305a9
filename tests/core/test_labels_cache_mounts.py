"""Labels and cache-mount identity: set at creation or later, kept across commits and
reopens, shown by disk usage, selected by filters, and the sharing modes of cache mounts
honoured between real processes."""

from __future__ import annotations

import json
import os
import select
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cachetui.core import (
    CacheManager,
    CacheMount,
    FilterSyntaxError,
    InvalidError,
    LockedError,
    PruneOptions,
    Sharing,
)

WORKER = Path(__file__).parent / "cachemount_worker.py"
FIXTURES = Path(__file__).parent / "fixtures"


def _row(cm: CacheManager, record_id: str):  # type: ignore[no-untyped-def]
    return next(r for r in cm.disk_usage() if r.id == record_id)


# -- labels -----------------------------------------------------------------------------


def test_labels_set_at_creation_are_shown_kept_and_follow_the_commit(tmp_path: Path) -> None:
    with CacheManager.open(tmp_path) as cm:
        ref = cm.new(description="npm ci", labels={"team": "infra", "project": "web"})
        assert _row(cm, ref.id).label_map == {"project": "web", "team": "infra"}
        committed = ref.commit()
        # the pair shows as the immutable while held: it carries the same labels
        assert _row(cm, committed.id).labels == (("project", "web"), ("team", "infra"))
        committed.finalize()
        committed.release()
        record_id = committed.id
    with CacheManager.open(tmp_path) as cm:
        assert cm.labels(record_id) == {"project": "web", "team": "infra"}


def test_the_documented_signature_still_works_without_labels(tmp_path: Path) -> None:
    with CacheManager.open(tmp_path) as cm:
        ref = cm.new(None, description="plain", record_type="regular", retain=False)
        assert _row(cm, ref.id).labels == ()
        assert _row(cm, ref.id).cache_mount is None
        ref.release()


def test_set_labels_adds_changes_removes_and_replaces(tmp_path: Path) -> None:
    with CacheManager.open(tmp_path) as cm:
        ref = cm.new(labels={"team": "infra"}, retain=True)
        ref.release()
        assert cm.set_labels(ref.id, {"team": "web", "tier": "ci"}) == {
            "team": "web",
            "tier": "ci",
        }
        assert cm.set_labels(ref.id, {"tier": None}) == {"team": "web"}
        assert cm.set_labels(ref.id, {"owner": "ana"}, replace=True) == {"owner": "ana"}
        assert _row(cm, ref.id).label_map == {"owner": "ana"}
        # a label change is not a use
        assert _row(cm, ref.id).usage_count == 1


def test_set_labels_on_a_pending_commit_labels_both_halves(tmp_path: Path) -> None:
    with CacheManager.open(tmp_path) as cm:
        ref = cm.new(retain=True)
        committed = ref.commit()
        cm.set_labels(committed.id, {"team": "infra"})
        committed.release()  # now the pair shows as its mutable
        assert _row(cm, ref.id).label_map == {"team": "infra"}


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"": "x"}, "label key"),
        ({"bad key": "x"}, "letters, digits"),
        ({"-x": "x"}, "start with a letter or digit"),
        ({"k": 3}, "expected a string"),
        ({"k": "a\x00b"}, "NUL"),
        (["team=infra"], "mapping"),
    ],
)
def test_bad_labels_are_refused_naming_them(tmp_path: Path, labels: object, message: str) -> None:
    with CacheManager.open(tmp_path) as cm:
        with pytest.raises(InvalidError, match=message):
            cm.new(labels=labels)  # type: ignore[arg-type]
        assert cm.disk_usage() == []
        assert list((tmp_path / "snapshots").iterdir()) == []


def test_label_filters_select_and_prune_only_one_teams_records(tmp_path: Path) -> None:
    with CacheManager.open(tmp_path) as cm:
        ids = {}
        for name, labels in [
            ("infra1", {"team": "infra"}),
            ("infra2", {"team": "infra", "ci": "yes"}),
            ("web", {"team": "web"}),
            ("none", {}),
        ]:
            ref = cm.new(description=name, labels=labels, retain=True)
            (ref.mount().upper / "f").write_bytes(b"x" * 5000)
            ref.release()
            ids[name] = ref.id

        def chosen(*filters: str) -> set[str]:
            return {r.description for r in cm.disk_usage(list(filters))}

        assert chosen("label.team==infra") == {"infra1", "infra2"}
        assert chosen("label.team!=infra") == {"web", "none"}
        assert chosen("label.team~=^w") == {"web"}
        assert chosen("label.ci") == {"infra2"}
        assert chosen("label.team==web", "label.ci") == {"web", "infra2"}
        with pytest.raises(FilterSyntaxError, match=r"label\.<key>"):
            cm.disk_usage(["labels.team==infra"])
        removed = cm.prune(PruneOptions(filters=("label.team==infra",)))
        assert {r.description for r in removed} == {"infra1", "infra2"}
        assert {r.description for r in cm.disk_usage()} == {"web", "none"}
    # the removed records' labels went with them (no rows left behind)
    con = sqlite3.connect(tmp_path / "metadata.db")
    try:
        left = {row[0] for row in con.execute("SELECT record FROM record_label")}
    finally:
        con.close()
    assert left == {ids["web"]}


# -- cache-mount identity ---------------------------------------------------------------


def test_cache_mount_identity_is_kept_shown_and_filterable(tmp_path: Path) -> None:
    with CacheManager.open(tmp_path) as cm:
        made = {}
        for project, mode in [("api", "locked"), ("web", "private"), ("cli", "shared")]:
            ref = cm.new(
                description="mount /root/.m2",
                record_type="exec.cachemount",
                retain=True,
                cache_mount=CacheMount(f"{project}-m2", "/root/.m2", mode),
            )
            ref.release()
            made[project] = ref.id
        row = _row(cm, made["api"])
        assert row.cache_mount == CacheMount("api-m2", "/root/.m2", Sharing.LOCKED)
        assert {r.id for r in cm.disk_usage(["cache-id==web-m2"])} == {made["web"]}
        assert {r.id for r in cm.disk_usage(["sharing==locked"])} == {made["api"]}
        assert len(cm.disk_usage(["target==/root/.m2"])) == 3
        assert {r.id for r in cm.disk_usage(["cache-id~=^c"])} == {made["cli"]}
        with pytest.raises(FilterSyntaxError, match="sharing mode 'lockd'"):
            cm.disk_usage(["sharing==lockd"])
    with CacheManager.open(tmp_path, read_only=True) as cm:
        assert _row(cm, made["web"]).cache_mount == CacheMount("web-m2", "/root/.m2", "private")


def test_cache_mount_identity_needs_the_cache_mount_type_and_valid_values(
    tmp_path: Path,
) -> None:
    with CacheManager.open(tmp_path) as cm:
        with pytest.raises(InvalidError, match=r"exec\.cachemount"):
            cm.new(cache_mount=CacheMount("m2", "/root/.m2"))
        with pytest.raises(InvalidError, match="sharing mode 'exclusive'"):
            CacheMount("m2", "/root/.m2", "exclusive")
        with pytest.raises(InvalidError, match="cache id"):
            CacheMount("", "/root/.m2")
        with pytest.raises(InvalidError, match="expected a CacheMount"):
            cm.new(record_type="exec.cachemount", cache_mount={"id": "m2"})  # type: ignore[arg-type]
        assert cm.disk_usage() == []


def test_private_gets_a_record_of_its_own_while_the_first_is_held(tmp_path: Path) -> None:
    with CacheManager.open(tmp_path) as cm:
        first = cm.get_cache_mount("m2", target="/root/.m2", sharing="private")
        second = cm.get_cache_mount("m2", target="/root/.m2", sharing="private")
        assert first.id != second.id
        second.release()
        third = cm.get_cache_mount("m2", target="/root/.m2", sharing="private")
        assert third.id == second.id  # a free one is reused
        rows = cm.disk_usage(["cache-id==m2"])
        assert {r.record_type for r in rows} == {"exec.cachemount"}
        assert len(rows) == 2
        first.release()
        third.release()
        # cache mounts are retained: releasing keeps them
        assert len(cm.disk_usage(["cache-id==m2"])) == 2


def test_shared_holders_use_one_record_at_once(tmp_path: Path) -> None:
    with CacheManager.open(tmp_path) as cm:
        one = cm.get_cache_mount("go-build", target="/root/.cache/go-build")
        two = cm.get_cache_mount("go-build", target="/root/.cache/go-build")
        assert one.id == two.id
        assert one.mount().upper == two.mount().upper
        with pytest.raises(LockedError):
            one.commit()  # others share it: no commit under them
        one.release()
        assert _row(cm, two.id).in_use
        two.release()
        assert not _row(cm, two.id).in_use


def _spawn(root: Path, mode: str, timeout: float | None = None) -> subprocess.Popen[str]:
    args = [sys.executable, str(WORKER), str(root), "m2", mode]
    if timeout is not None:
        args.append(str(timeout))
    return subprocess.Popen(
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )


def _line(proc: subprocess.Popen[str], within: float = 30.0) -> dict[str, str] | None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], within)
    if not ready:
        return None
    line = proc.stdout.readline()
    assert line, proc.stderr.read() if proc.stderr else ""
    return json.loads(line)  # type: ignore[no-any-return]


def _finish(proc: subprocess.Popen[str]) -> int:
    assert proc.stdin is not None
    try:
        proc.stdin.write("\n")
        proc.stdin.flush()
    except BrokenPipeError:
        pass
    return proc.wait(timeout=30)


def test_locked_waits_for_the_holder_in_another_process(tmp_path: Path) -> None:
    CacheManager.open(tmp_path).close()
    holder = _spawn(tmp_path, "locked")
    got = _line(holder)
    assert got is not None and "id" in got
    # a third process asking not to wait is refused, naming the holder's pid
    refused = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path), "m2", "locked", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert refused.returncode == 3
    assert f"pid {holder.pid}" in json.loads(refused.stdout)["error"]
    # a waiting process gets nothing while the holder holds, then the same record
    waiter = _spawn(tmp_path, "locked")
    assert _line(waiter, within=1.0) is None
    with CacheManager.open(tmp_path) as cm:
        with pytest.raises(LockedError):
            cm.get_cache_mount("m2", sharing="locked", timeout=0.3)
        # never a second record for a locked cache id
        assert len(cm.disk_usage(["cache-id==m2"])) == 1
    assert _finish(holder) == 0
    after = _line(waiter)
    assert after == {"id": got["id"]}
    assert _finish(waiter) == 0


def test_locked_holder_killed_lets_the_waiter_in(tmp_path: Path) -> None:
    CacheManager.open(tmp_path).close()
    holder = _spawn(tmp_path, "locked")
    got = _line(holder)
    assert got is not None
    waiter = _spawn(tmp_path, "locked")
    assert _line(waiter, within=1.0) is None
    holder.kill()
    holder.wait(timeout=30)
    assert _line(waiter) == {"id": got["id"]}
    assert _finish(waiter) == 0


def test_private_in_another_process_gets_its_own_record(tmp_path: Path) -> None:
    CacheManager.open(tmp_path).close()
    holder = _spawn(tmp_path, "locked")
    got = _line(holder)
    assert got is not None
    other = _spawn(tmp_path, "private")
    mine = _line(other)
    assert mine is not None and mine["id"] != got["id"]
    assert _finish(other) == 0
    assert _finish(holder) == 0
    with CacheManager.open(tmp_path) as cm:
        rows = cm.disk_usage(["cache-id==m2"])
        assert {r.id for r in rows} == {got["id"], mine["id"]}
        assert {r.cache_mount.sharing for r in rows if r.cache_mount} == {"locked", "private"}


def test_get_cache_mount_refuses_bad_arguments(tmp_path: Path) -> None:
    with CacheManager.open(tmp_path) as cm:
        with pytest.raises(InvalidError, match="timeout"):
            cm.get_cache_mount("m2", timeout=-1)
        with pytest.raises(InvalidError, match="sharing mode"):
            cm.get_cache_mount("m2", sharing="exclusive")
        with pytest.raises(InvalidError, match="cache id"):
            cm.get_cache_mount("")
        assert cm.disk_usage() == []


# -- apparent size ----------------------------------------------------------------------


def test_disk_usage_reports_apparent_size_beside_allocated_size(tmp_path: Path) -> None:
    with CacheManager.open(tmp_path) as cm:
        ref = cm.new(retain=True)
        with open(ref.mount().upper / "sparse", "wb") as fh:
            fh.truncate(64 << 20)
        (ref.mount().upper / "small").write_bytes(b"x")
        ref.release()
        row = _row(cm, ref.id)
        assert row.apparent_size > 64 << 20 > row.size
        expected = int(
            subprocess.run(
                [
                    "du",
                    "-s",
                    "--apparent-size",
                    "--block-size=1",
                    str(tmp_path / "snapshots" / ref.id),
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()[0]
        )
        assert row.apparent_size == expected
    with CacheManager.open(tmp_path) as cm:  # cached beside the size
        assert _row(cm, ref.id).apparent_size == expected
        # the screens' one value per record carries it too
        assert cm.records()[ref.id].apparent_size == expected


def test_records_carry_the_apparent_size_of_a_held_mutable_measured_now(tmp_path: Path) -> None:
    with CacheManager.open(tmp_path) as cm:
        ref = cm.new()
        with open(ref.mount().upper / "sparse", "wb") as fh:
            fh.truncate(8 << 20)
        state = cm.records()[ref.id]
        assert state.apparent_size >= 8 << 20 > state.size
        ref.release()


# -- an older store ---------------------------------------------------------------------


def test_a_first_landing_store_upgrades_and_takes_labels(tmp_path: Path) -> None:
    root = tmp_path / "store"
    shutil.copytree(FIXTURES / "store_v1", root)
    with CacheManager.open(root, read_only=True) as cm:
        rows = cm.disk_usage()  # read as it is: no labels, no apparent sizes yet
        assert rows and all(r.labels == () and r.apparent_size == -1 for r in rows)
        assert cm.disk_usage(["label.team"]) == []
    con = sqlite3.connect(root / "metadata.db")
    try:
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master")}
    finally:
        con.close()
    assert "record_label" not in tables  # the read changed nothing
    with CacheManager.open(root) as cm:
        target = rows[0].id
        cm.set_labels(target, {"team": "infra"})
        assert [r.id for r in cm.disk_usage(["label.team==infra"])] == [target]
        ref = cm.new(record_type="exec.cachemount", cache_mount=CacheMount("m2", "/root/.m2"))
        assert _row(cm, ref.id).cache_mount == CacheMount("m2", "/root/.m2", "shared")
        ref.release()
