"""A store on a really full disk (a small tmpfs, filled to the last byte): it opens, prune
frees it, and every message says "disk full", never something that reads like a damaged
database. Root only (mount); under ``CI=true`` (root) nothing here skips."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cachetui.core import CacheManager, reserve
from tests.reliability.workers import child_env

CANARY = b"canary" * 1000


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root and must mount a tmpfs")
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "cachetui-full", str(disk)],
        capture_output=True,
    )
    if done.returncode:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs: {done.stderr.decode()}")
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill_store(root: Path, records: int = 12) -> list[str]:
    ids = []
    with CacheManager.open(root) as cm:
        for i in range(records):
            ref = cm.new(description=f"layer {i}")
            (ref.mount().upper / "blob").write_bytes(os.urandom(100_000))  # type: ignore[operator]
            imm = ref.commit()
            imm.finalize()
            imm.release()
            ids.append(imm.id)
    return ids


def _fill_disk(disk: Path) -> Path:
    """Write a file outside the store until the disk has no byte left."""
    filler = disk / "outside-the-store"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, CANARY)
        for chunk in (65536, 4096, 1):  # unbuffered: the last partial block too
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
    finally:
        os.close(fd)
    assert os.statvfs(disk).f_bavail == 0
    return filler


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cachetui", *args],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
    )


def test_a_store_sets_space_aside(small_disk: Path) -> None:
    root = small_disk / "store"
    _fill_store(root, records=1)
    kept = Path(reserve.reserve_path(str(root / "metadata.db")))
    assert kept.stat().st_blocks * 512 >= reserve.RESERVE_BYTES


def test_prune_frees_a_full_disk(small_disk: Path) -> None:
    root = small_disk / "store"
    ids = _fill_store(root)
    filler = _fill_disk(small_disk)
    listed = cli("du", "--format", "json", "--root", str(root))
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == len(ids)
    pruned = cli("prune", "--all", "--force", "--root", str(root))
    assert pruned.returncode == 0, pruned.stderr
    assert os.listdir(root / "snapshots") == []
    assert os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize > 1_000_000
    with open(filler, "rb") as fh:  # the file outside the store is untouched
        assert fh.read(len(CANARY)) == CANARY
    assert cli("du", "--format", "json", "--root", str(root)).stdout == ""


def test_without_the_reserve_the_message_says_disk_full(small_disk: Path) -> None:
    root = small_disk / "store"
    _fill_store(root)
    reserve.release(str(root / "metadata.db"))
    _fill_disk(small_disk)
    for command in (["du"], ["prune", "--all", "--force"], ["doctor"]):
        done = cli(*command, "--root", str(root))
        assert done.returncode == 1, done.stdout
        assert "Traceback" not in done.stderr
        assert "disk full" in done.stderr, done.stderr
        assert "unreadable" not in done.stderr and "malformed" not in done.stderr
    assert len(os.listdir(root / "snapshots")) == 12
