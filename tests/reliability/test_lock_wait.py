"""Waiting behind another process's write lock: announced, interruptible, bounded.

A real second process holds the store's write transaction open; the command line then
has to say whom it waits for (by pid) within a couple of seconds, and Ctrl-C (a real
SIGINT) must end the wait at once with exit 130 and nothing changed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cachetui.core import CacheManager, StoreError
from cachetui.core.writelock import write_lock_holder
from tests.reliability.workers import child_env

HOLD = """
import sys
from cachetui.core import CacheManager
cm = CacheManager.open(sys.argv[1])
with cm.store.write():
    print("locked", flush=True)
    sys.stdin.readline()
cm.close()
"""


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    with CacheManager.open(root) as cm:
        for _ in range(3):
            ref = cm.new()
            (ref.mount().upper / "f").write_bytes(b"x" * 5000)  # type: ignore[operator]
            imm = ref.commit()
            imm.finalize()
            imm.release()
    return root


@pytest.fixture
def holder(store: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(store)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    yield proc
    if proc.poll() is None:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(timeout=30)


def test_the_holder_is_named_from_the_lock_itself(
    store: Path, holder: subprocess.Popen[str]
) -> None:
    assert write_lock_holder(str(store / "metadata.db")) == holder.pid


def test_waiting_is_announced_and_ctrl_c_ends_it(
    store: Path, holder: subprocess.Popen[str]
) -> None:
    before = sorted(os.listdir(store / "snapshots"))
    assert len(before) == 3
    cli = subprocess.Popen(
        [sys.executable, "-m", "cachetui", "prune", "--all", "--force", "--root", str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    assert cli.stderr is not None
    started = time.monotonic()
    line = cli.stderr.readline()  # blocks until the announcement (or the end)
    assert line.strip() == (
        f"cachetui: waiting for {holder.pid} which holds the store's write lock"
    ), line
    assert time.monotonic() - started < 30
    assert cli.poll() is None  # still waiting
    cli.send_signal(signal.SIGINT)
    code = cli.wait(timeout=10)  # at once, not after the busy timeout
    rest = cli.stderr.read()
    assert code == 130, rest
    assert rest.strip() == "cachetui: interrupted" and "Traceback" not in rest
    holder.stdin.close()  # type: ignore[union-attr]
    holder.wait(timeout=30)
    assert sorted(os.listdir(store / "snapshots")) == before
    with CacheManager.open(store) as cm:
        assert len(cm.disk_usage()) == 3


def test_after_the_holder_lets_go_the_command_goes_on(
    store: Path, holder: subprocess.Popen[str]
) -> None:
    cli = subprocess.Popen(
        [sys.executable, "-m", "cachetui", "prune", "--all", "--force", "--root", str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    assert cli.stderr is not None
    assert "waiting for" in cli.stderr.readline()
    holder.stdin.close()  # type: ignore[union-attr]
    holder.wait(timeout=30)
    _out, err = cli.communicate(timeout=60)
    assert cli.returncode == 0, err
    assert os.listdir(store / "snapshots") == []


def test_a_size_cache_write_never_waits(store: Path, holder: subprocess.Popen[str]) -> None:
    """Caching a measured size is skipped, not waited for, while another process writes."""
    from cachetui.core.store import Store

    st = Store(store / "metadata.db")
    try:
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"locked|busy"), st.write(wait=False):
            pass
        assert time.monotonic() - started < 5
    finally:
        st.close()
