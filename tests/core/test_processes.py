"""Holders are persisted: a ref held by another live process makes a record in use."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cachetui.core import CacheManager, LockedError, PruneOptions

HOLDER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from cachetui.core import CacheManager
    cm = CacheManager.open(sys.argv[1])
    ref = cm.get_mutable(sys.argv[2])
    print("held", flush=True)
    time.sleep(600)
    """
)


@pytest.fixture
def holder_process(root: Path, cm: CacheManager):
    record = cm.new(retain=True)
    record.release()
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, str(root), record.id],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "held"
    yield child, record.id
    if child.poll() is None:
        child.kill()
    child.wait()


def test_a_record_held_by_a_live_process_is_in_use_and_locked(cm, holder_process) -> None:
    child, record_id = holder_process
    (row,) = cm.disk_usage()
    assert row.id == record_id and row.in_use
    with pytest.raises(LockedError):
        cm.get_mutable(record_id)
    assert cm.prune(PruneOptions(all=True)) == []
    (holder,) = cm.state().holders
    assert holder.pid == child.pid and holder.alive

    os.kill(child.pid, signal.SIGKILL)
    child.wait()

    (row,) = cm.disk_usage()
    assert not row.in_use
    mine = cm.get_mutable(record_id)  # the dead holder is reaped
    assert mine.id == record_id
    assert [h.pid for h in cm.state().holders] == [os.getpid()]
    mine.release()


def test_a_killed_holder_process_does_not_block_prune(cm, holder_process) -> None:
    child, record_id = holder_process
    child.kill()
    child.wait()
    assert [r.id for r in cm.prune(PruneOptions(all=True))] == [record_id]


def test_a_zombie_holder_counts_as_dead(cm, holder_process) -> None:
    child, _record_id = holder_process
    os.kill(child.pid, signal.SIGKILL)
    # Not waited for yet: the child is a zombie until reaped, and must not count.
    for _ in range(200):
        with open(f"/proc/{child.pid}/stat", "rb") as fh:
            if fh.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                break
        import time

        time.sleep(0.01)
    (row,) = cm.disk_usage()
    assert not row.in_use
