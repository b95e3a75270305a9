"""The ``cachetui`` command line, run as a real subprocess against real stores."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cachetui import output
from cachetui.core import CacheManager, ImmutableRef, UsageInfo
from cachetui.core.diskusage import totals
from tests.conftest import FakeClock, write_file

DAY = 86400.0
JSON_KEYS = {
    "id": str,
    "health": str,
    "parents": list,
    "created_at": str,
    "last_used_at": (str, type(None)),
    "mutable": bool,
    "in_use": bool,
    "reclaimable": bool,
    "shared": bool,
    "size": int,
    "description": str,
    "usage_count": int,
    "record_type": str,
    "apparent_size": (int, type(None)),
    "labels": dict,
    "cache_mount": (dict, type(None)),
}
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def run(*args: str, stdin: int | None = subprocess.DEVNULL, env: dict | None = None):
    return subprocess.run(
        ["cachetui", *args],
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@dataclass
class Store:
    root: Path
    ids: dict[str, str] = field(default_factory=dict)

    def visible(self) -> dict[str, UsageInfo]:
        with CacheManager.open(self.root) as cm:
            return {info.id: info for info in cm.disk_usage()}


def _layer(cm: CacheManager, parent: ImmutableRef | None, desc: str, size: int, **kw) -> str:
    ref = cm.new(parent, description=desc, **kw)
    write_file(ref.mount().upper, "data", size)
    committed = ref.commit()
    committed.finalize()
    committed.set_retain(True)
    committed.release()
    return committed.id


def build_store(root: Path) -> Store:
    """base <- old (10 days), base <- fresh (1 hour), a cache mount, a frontend and an
    internal record; times relative to now, with a fixed clock while building."""
    clock = FakeClock(time.time() - 20 * DAY)
    store = Store(root)
    with CacheManager.open(root, clock=clock) as cm:
        ids = store.ids
        ids["frontend"] = _layer(
            cm, None, "pulled from docker/dockerfile:1", 5000, record_type="frontend"
        )
        ids["internal"] = _layer(
            cm, None, "[internal] load build definition", 3000, record_type="internal"
        )
        clock.advance(10 * DAY)  # 10 days ago
        ids["base"] = _layer(cm, None, "pulled from docker.io/library/debian:bookworm", 200_000)
        with cm.get(ids["base"]) as base:
            ids["old"] = _layer(cm, base, "[stage-1 3/5] RUN pip install -r req.txt", 80_000)
        clock.advance(7 * DAY)  # 3 days ago
        mount = cm.new(
            description="cached mount /root/.cache/pip from exec /bin/sh -c pip install",
            record_type="exec.cachemount",
            retain=True,
        )
        write_file(mount.mount().upper, "wheel", 40_000)
        mount.release()
        ids["cachemount"] = mount.id
        clock.advance(3 * DAY - 3600)  # an hour ago
        with cm.get(ids["base"]) as base:
            ids["fresh"] = _layer(cm, base, "[stage-1 5/5] COPY . .", 20_000)
    return store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return build_store(tmp_path / "store")


@pytest.fixture
def held(store: Store) -> Iterator[Store]:
    """The store with ``fresh`` held by this (live) process: it and ``base`` are in use."""
    cm = CacheManager.open(store.root)
    ref = cm.get(store.ids["fresh"])
    try:
        yield store
    finally:
        ref.release()
        cm.close()


def lines_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# -- du ------------------------------------------------------------------------------------


def test_du_table_header_rows_totals_and_marks(held: Store) -> None:
    result = run("du", "--root", str(held.root))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.match(
        r"ID\s+RECLAIMABLE\s+SIZE\s+LAST ACCESSED\s+(APPARENT\s+)?TYPE\s+FLAGS$", lines[0]
    )
    rows = {line.split()[0].rstrip("*"): line for line in lines[1:] if line and ":" not in line}
    assert set(rows) == set(held.ids.values())
    mount = rows[held.ids["cachemount"]]
    assert mount.startswith(held.ids["cachemount"] + "*")
    assert "exec.cachemount" in mount and "mutable" in mount
    assert re.search(r"\sfalse\s", rows[held.ids["base"]]) and "in use" in rows[held.ids["base"]]
    assert re.search(r"\strue\s", rows[held.ids["old"]])
    assert "About an hour ago" in rows[held.ids["fresh"]]
    assert "10 days ago" in rows[held.ids["old"]]
    tail = "\n".join(lines)
    assert re.search(r"^Reclaimable:\s+\S+B$", tail, re.M)
    assert re.search(r"^Total:\s+\S+B$", tail, re.M)
    assert re.search(r"^Disk free:\s+\S+B of \S+B$", tail, re.M)
    assert "Shared:" not in tail  # nothing is shared
    with CacheManager.open(held.root) as cm:
        expected = totals(cm.disk_usage())
    assert f"Total:       {output.format_bytes_buildx(expected.total)}" in tail


def test_du_json_lines_have_exact_keys_and_types(held: Store) -> None:
    result = run("du", "--root", str(held.root), "--format", "json")
    assert result.returncode == 0, result.stderr
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert {o["id"] for o in objects} == set(held.ids.values())
    for obj in objects:
        assert set(obj) == set(JSON_KEYS)
        for key, kind in JSON_KEYS.items():
            assert isinstance(obj[key], kind), (key, obj[key])
        assert RFC3339.fullmatch(obj["created_at"])
        assert obj["last_used_at"] is None or RFC3339.fullmatch(obj["last_used_at"])
        assert obj["reclaimable"] is (not obj["in_use"])
    by_id = {o["id"]: o for o in objects}
    assert by_id[held.ids["old"]]["parents"] == [held.ids["base"]]
    assert by_id[held.ids["cachemount"]]["mutable"] is True
    assert by_id[held.ids["base"]]["in_use"] is True
    assert by_id[held.ids["frontend"]]["record_type"] == "frontend"


def test_du_verbose_blocks(store: Store) -> None:
    result = run("du", "--root", str(store.root), "--verbose")
    assert result.returncode == 0, result.stderr
    blocks = result.stdout.split("\n\n")
    old = next(b for b in blocks if store.ids["old"] in b.splitlines()[0])
    labels = [line.split(":")[0] for line in old.splitlines() if not line.startswith(" - ")]
    # buildx's fields in buildx's order; ours (apparent size, cache mount, labels) follow
    assert labels[:11] == [
        "ID",
        "Parents",
        "Created at",
        "Mutable",
        "Reclaimable",
        "Shared",
        "Size",
        "Description",
        "Usage count",
        "Last used",
        "Type",
    ]
    assert f" - {store.ids['base']}" in old
    assert re.search(r"Created at:\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \+0000 UTC", old)
    assert re.search(r"^Last used:\s+10 days ago$", old, re.M)
    assert "Total:" in blocks[-1]


def test_du_filter_selects_and_hides_totals(store: Store) -> None:
    result = run("du", "--root", str(store.root), "--filter", "type==exec.cachemount")
    assert result.returncode == 0, result.stderr
    lines = lines_of(result.stdout)
    assert len(lines) == 2 and lines[1].startswith(store.ids["cachemount"] + "*")
    assert "Total:" not in result.stdout
    either = run("du", "--root", str(store.root), "-f", "type==frontend", "-f", "type==internal")
    assert len(lines_of(either.stdout)) == 3


@pytest.mark.parametrize(
    ("text", "position"),
    [("type=", 4), ("bogus==1", 0), ("type==regular,type==internal", 14), ("type==bogus", 6)],
)
def test_du_malformed_filter_is_usage_error_with_caret(
    store: Store, text: str, position: int
) -> None:
    result = run("du", "--root", str(store.root), "--filter", text)
    assert result.returncode == 2
    assert result.stdout == ""
    err = result.stderr.splitlines()
    assert err[0].startswith("cachetui: ") and f"position {position}" in err[0]
    assert err[1] == f"  {text}"
    assert err[2] == " " * (2 + position) + "^"


def test_root_from_env_and_before_subcommand(store: Store, tmp_path: Path) -> None:
    via_env = run("du", "--format", "json", env={"CACHETUI_ROOT": str(store.root)})
    assert via_env.returncode == 0 and len(via_env.stdout.splitlines()) == len(store.ids)
    before = run("--root", str(store.root), "du", "--format", "json")
    assert before.returncode == 0 and before.stdout == via_env.stdout


def test_root_that_is_a_file_is_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "afile"
    path.write_text("x")
    for command in ("du", "prune", "doctor"):
        result = run(command, "--root", str(path), "--force")
        if command != "prune":
            result = run(command, "--root", str(path))
        assert result.returncode == 2, result
        assert result.stderr.startswith("cachetui: ") and str(path) in result.stderr


def test_missing_root_is_failure_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    for args in (("du",), ("prune", "--force"), ("doctor",)):
        result = run(*args, "--root", str(missing))
        assert result.returncode == 1
        assert result.stderr.strip() == f"cachetui: no cache store at {missing}"
    assert not missing.exists()


def test_usage_error_is_one_line_exit_2() -> None:
    result = run("du", "--format", "yaml")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("cachetui: ")


# -- prune ---------------------------------------------------------------------------------


def prune(store: Store, *args: str):
    return run("prune", "--root", str(store.root), *args)


def removed_ids(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    # a space-limited dry run explains its limit below the total: stop at the total
    end = next(i for i, line in enumerate(lines) if re.match(r"(Total|Would free):", line))
    assert re.fullmatch(r"(Total|Would free):\t\S+B", lines[end])
    assert all(line.startswith(("Limit:", "\t")) for line in lines[end + 1 :])
    if end == 0:
        return []
    assert lines[0].split() == ["ID", "RECLAIMABLE", "SIZE", "LAST", "ACCESSED"]
    assert sum(1 for line in lines if line.startswith("ID ")) == 1  # header once
    return [line.split()[0].rstrip("*") for line in lines[1:end]]


def test_prune_refuses_without_terminal(store: Store) -> None:
    before = store.visible()
    result = prune(store)
    assert result.returncode == 2
    assert "--force" in result.stderr and result.stderr.startswith("cachetui: ")
    assert result.stdout == ""
    assert store.visible().keys() == before.keys()


def test_prune_force_streams_rows_then_total(held: Store) -> None:
    result = prune(held, "--force")
    assert result.returncode == 0, result.stderr
    gone = removed_ids(result.stdout)
    ids = held.ids
    # Held records, their ancestors, frontend and internal stay; children go before parents.
    assert set(gone) == {ids["old"], ids["cachemount"]}
    remaining = held.visible()
    assert set(remaining) == {ids["base"], ids["fresh"], ids["frontend"], ids["internal"]}


def test_prune_all_includes_frontend_and_internal(store: Store) -> None:
    before = store.visible()
    result = prune(store, "--all", "--force")
    assert result.returncode == 0, result.stderr
    gone = removed_ids(result.stdout)
    assert set(gone) == set(before)
    assert gone.index(store.ids["old"]) < gone.index(store.ids["base"])
    assert gone.index(store.ids["fresh"]) < gone.index(store.ids["base"])
    total = sum(info.size for info in before.values())
    assert result.stdout.splitlines()[-1] == f"Total:\t{output.format_bytes_buildx(total)}"
    assert store.visible() == {}


def test_prune_filter(store: Store) -> None:
    result = prune(store, "--force", "--filter", "type==exec.cachemount")
    assert result.returncode == 0, result.stderr
    assert removed_ids(result.stdout) == [store.ids["cachemount"]]
    bad = prune(store, "--force", "--filter", "type==")
    assert bad.returncode == 2 and "^" in bad.stderr


def test_prune_keep_duration(store: Store) -> None:
    result = prune(store, "--force", "--keep-duration", "5d")
    assert result.returncode == 0, result.stderr
    # old (10 days) goes; cachemount (3 days) and fresh (1 hour) stay; base keeps its child.
    assert removed_ids(result.stdout) == [store.ids["old"]]
    assert store.ids["fresh"] in store.visible()


def _regular_total(store: Store) -> int:
    return sum(i.size for i in store.visible().values() if i.record_type == "regular")


def test_prune_reserved_space(store: Store) -> None:
    limit = _regular_total(store) + 1  # everything regular fits: only the cache mount goes
    result = prune(store, "--force", "--reserved-space", f"{limit}B")
    assert result.returncode == 0, result.stderr
    gone = removed_ids(result.stdout)
    assert 1 <= len(gone) < 4
    assert sum(i.size for i in store.visible().values()) <= limit + 8000  # + frontend/internal


def test_prune_max_used_space_absolute_and_percent(store: Store) -> None:
    everything = prune(store, "--dry-run", "--max-used-space", "100%")
    assert everything.returncode == 0, everything.stderr
    assert everything.stdout.splitlines()[0] == "Would free:\t0B"
    assert "(--max-used-space)" in everything.stdout
    result = prune(store, "--force", "--max-used-space", "1kB")
    assert result.returncode == 0, result.stderr
    gone = set(removed_ids(result.stdout))
    ids = store.ids
    assert gone == {ids["old"], ids["fresh"], ids["base"], ids["cachemount"]}
    assert set(store.visible()) == {ids["frontend"], ids["internal"]}


def test_prune_min_free_space(store: Store) -> None:
    nothing = prune(store, "--force", "--min-free-space", "1B")
    assert nothing.returncode == 0, nothing.stderr
    assert nothing.stdout.splitlines() == ["Total:\t0B"]
    everything = prune(store, "--force", "--min-free-space", "100%")
    assert everything.returncode == 0, everything.stderr
    assert len(removed_ids(everything.stdout)) == 4


def test_dry_run_leaves_store_and_predicts_real_prune(store: Store) -> None:
    before = store.visible()
    dry = prune(store, "--dry-run", "--keep-duration", "2d")
    assert dry.returncode == 0, dry.stderr
    predicted = removed_ids(dry.stdout)
    assert dry.stdout.splitlines()[-1].startswith("Would free:\t")
    assert store.visible() == before
    real = prune(store, "--force", "--keep-duration", "2d")
    assert real.returncode == 0, real.stderr
    assert sorted(removed_ids(real.stdout)) == sorted(predicted)
    assert len(predicted) == 2


def test_prune_json(store: Store) -> None:
    result = prune(store, "--force", "--all", "--format", "json")
    assert result.returncode == 0, result.stderr
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert {o["id"] for o in objects} == set(store.ids.values())
    for obj in objects:
        assert set(obj) == set(JSON_KEYS)


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--max-used-space", "10QB"),
        ("--reserved-space", "-5GB"),
        ("--min-free-space", "150%"),
        ("--keep-duration", "48x"),
        ("--keep-duration", "-1h"),
    ],
)
def test_bad_sizes_and_durations(store: Store, flag: str, value: str) -> None:
    before = store.visible()
    result = prune(store, "--force", f"{flag}={value}")
    assert result.returncode == 2
    err = result.stderr.strip()
    assert err.startswith(f"cachetui: invalid {flag} '{value}': ")
    assert len(err.splitlines()) == 1
    assert store.visible().keys() == before.keys()


# -- doctor --------------------------------------------------------------------------------


def test_doctor_clean(store: Store) -> None:
    result = run("doctor", "--root", str(store.root))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "store is clean"
    as_json = run("doctor", "--root", str(store.root), "--format", "json")
    assert as_json.returncode == 0 and as_json.stdout == ""


def test_doctor_unknown_directory_reported_then_fixed(store: Store) -> None:
    stray = store.root / "snapshots" / ("z" * 25)
    stray.mkdir()
    (stray / "junk").write_bytes(b"x" * 100)
    report = run("doctor", "--root", str(store.root), "--format", "json")
    assert report.returncode == 1
    findings = [json.loads(line) for line in report.stdout.splitlines()]
    assert findings == [
        {
            "kind": "unknown-dir",
            "subject": "z" * 25,
            "message": "directory without a record",
            "fixed": False,
        }
    ]
    assert stray.exists()
    table = run("doctor", "--root", str(store.root))
    assert table.returncode == 1 and "unknown-dir" in table.stdout and "z" * 25 in table.stdout
    fixed = run("doctor", "--root", str(store.root), "--fix")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "yes" in fixed.stdout
    assert not stray.exists()
    assert run("doctor", "--root", str(store.root)).returncode == 0


# -- pure rendering ------------------------------------------------------------------------


def _info(**kw) -> UsageInfo:
    base = {
        "id": "a" * 25,
        "mutable": False,
        "in_use": False,
        "size": 1_704_000_000,
        "parents": (),
        "created_at": datetime(2026, 11, 28, 1, 2, 3, tzinfo=UTC),
        "last_used_at": None,
        "usage_count": 0,
        "description": "",
        "record_type": "regular",
        "shared": False,
    }
    return UsageInfo(**{**base, **kw})


def test_render_shared_marks_and_shared_totals() -> None:
    rows = [_info(shared=True, mutable=True), _info(id="b" * 25, size=8224)]
    now = datetime(2026, 11, 28, tzinfo=UTC).timestamp()
    table = output.render_du_table(rows, now)
    assert table[1].startswith("a" * 25 + "*") and "1.704GB*" in table[1]
    assert table[1].endswith("mutable, shared")
    assert "8.224kB " in table[2] and "*" not in table[2]
    block = output.render_totals(totals(rows))
    assert block == [
        "Shared:      1.704GB",
        "Private:     8.224kB",
        "Reclaimable: 1.704GB",
        "Total:       1.704GB",
    ]
    obj = output.usage_json(rows[0])
    assert obj["created_at"] == "2026-11-28T01:02:03Z" and obj["last_used_at"] is None
    assert obj["shared"] is True and obj["size"] == 1_704_000_000


def test_du_and_prune_never_import_textual(store: Store) -> None:
    code = (
        "import sys\n"
        "from cachetui.cli import main\n"
        f"assert main(['du', '--root', {str(store.root)!r}]) == 0\n"
        f"assert main(['prune', '--root', {str(store.root)!r}, '--dry-run']) == 0\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'textual'], 'textual'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_read_only_dashboard_on_missing_root_fails(tmp_path: Path) -> None:
    result = run("--root", str(tmp_path / "none"), "--read-only")
    assert result.returncode == 1
    assert "no cache store" in result.stderr


@pytest.mark.parametrize(("answer", "removes"), [(b"y\n", True), (b"n\n", False)])
def test_prune_asks_on_a_terminal(store: Store, answer: bytes, removes: bool) -> None:
    import pty

    master, slave = pty.openpty()
    try:
        os.write(master, answer)  # typed ahead; read when the prompt is shown
        result = subprocess.run(
            ["cachetui", "prune", "--root", str(store.root), "--all"],
            stdin=slave,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.close(slave)
        os.close(master)
    assert result.returncode == 0, result.stderr
    assert "WARNING! This will remove all build cache: 6 records (" in result.stderr
    assert "Are you sure you want to continue? [y/N]" in result.stderr
    if removes:
        assert len(removed_ids(result.stdout)) == 6
        assert store.visible() == {}
    else:
        assert result.stdout == ""
        assert len(store.visible()) == 6
