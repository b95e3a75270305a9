"""The dashboard in a real terminal (tmux), where the bytes a key sends matter, and run
by a user who cannot write the store.

The real ``cachetui`` command runs in tmux; keys go in as the bytes a terminal sends and
the screen is read back as text.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.terminal import Terminal, cachetui_command, needs_tmux
from tests.ui.store_fixture import build_fixture_store


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    needs_tmux()
    term = Terminal(tmp_path, width=130, height=36)
    try:
        yield term
    finally:
        term.close()


def selected(screen: str) -> str | None:
    """The record the details pane is about (the one under the cursor)."""
    found = re.search(r"^ ID\s+([0-9a-z]{25})\s*$", screen, re.MULTILINE)
    return found.group(1) if found else None


def words(screen: str) -> str:
    """The screen's words with single spaces (a status line may wrap)."""
    return " ".join(screen.split())


def test_j_k_e_and_space_as_a_terminal_sends_them(tmp_path: Path, terminal: Terminal) -> None:
    root = tmp_path / "store"
    ids = build_fixture_store(root)
    terminal.run([*cachetui_command(), "--root", str(root)])
    screen = terminal.wait_for(lambda s: "● live" in s and selected(s), "the dashboard")
    assert selected(screen) == ids["old"]  # the largest root comes first
    terminal.keys("j")
    terminal.wait_for(lambda s: selected(s) == ids["gomod"], "j to move down")
    terminal.keys("k")
    terminal.wait_for(lambda s: selected(s) == ids["old"], "k to move up")
    terminal.keys("j", "j")
    screen = terminal.wait_for(lambda s: selected(s) == ids["alpine"], "j twice")
    assert "RUN strip" not in screen  # six levels down: not shown yet
    terminal.keys("e")  # expand everything below, with a key every terminal sends as is
    screen = terminal.wait_for(lambda s: "RUN strip" in s, "e to expand all")
    assert selected(screen) == ids["alpine"]
    # A plain space (what most terminals send for shift+space too) marks; it never
    # expands or collapses.
    terminal.keys("k", "Space")
    screen = terminal.wait_for(lambda s: "Marked 1 (187MB)" in words(s), "space to mark")
    assert "RUN strip" in screen  # the tree stayed as it was
    mark_row = next(line for line in screen.splitlines() if ids["gomod"][:12] in line)
    assert "✓" in mark_row
    assert selected(screen) == ids["alpine"]  # marking moves to the next record
    terminal.keys("k", "Space")
    terminal.wait_for(lambda s: "Marked" not in s, "space again to unmark")
    terminal.keys("q")
    assert terminal.exit_code() == 0


@pytest.mark.parametrize("shared_directory", [False, True], ids=["their-store", "their-metadata"])
def test_a_store_the_user_cannot_write_opens_read_only_and_says_so(
    tmp_path: Path, terminal: Terminal, shared_directory: bool
) -> None:
    """Another user's store, or only its metadata in a directory anyone may write: the
    dashboard falls back to read-only (as ``du`` does), the header says so and why, a
    key that would change the store is refused with the reason, and nothing changes."""
    # Where any user may search (pytest's own temporary directories are root's alone).
    place = Path(tempfile.mkdtemp(prefix="cachetui-readonly-"))
    place.chmod(0o755)
    try:
        _read_only_dashboard(place / "store", tmp_path, terminal, shared_directory)
    finally:
        shutil.rmtree(place)


def _read_only_dashboard(
    root: Path, tmp_path: Path, terminal: Terminal, shared_directory: bool
) -> None:
    build_fixture_store(root)
    command = [*cachetui_command(), "--root", str(root)]
    as_root = os.geteuid() == 0
    if as_root:
        # Root writes anything: run as nobody, who writes none of root's files, with the
        # one capability to read and search any directory (this Python may live under
        # /root). Access checks (os.access) ignore that capability: they see nobody.
        if shutil.which("setpriv") is None:
            pytest.fail("needs setpriv (util-linux)")
        nobody = pwd.getpwnam("nobody")
        home = tmp_path / "home"
        home.mkdir()
        home.chmod(0o777)
        prefix = [
            "setpriv",
            f"--reuid={nobody.pw_uid}",
            f"--regid={nobody.pw_gid}",
            "--clear-groups",
            "--inh-caps=+dac_read_search",
            "--ambient-caps=+dac_read_search",
            "env",
            f"HOME={home}",
        ]
        if shared_directory:
            root.chmod(0o777)
    else:
        prefix = []
        locked = [root / "metadata.db"] if shared_directory else [root, *root.rglob("*")]
        for path in locked:
            path.chmod(0o555 if path.is_dir() else 0o444)
    before = _listing(root)
    try:
        for cli in (["du"], []):  # du reads it; the dashboard opens it read-only
            terminal.run([*prefix, *command[:-2], *cli, *command[-2:]])
            if cli:
                assert terminal.exit_code() == 0, terminal.screen()
                terminal.keys("clear", "Enter")
        screen = terminal.wait_for(lambda s: "READ-ONLY" in s and selected(s), "the dashboard")
        header = screen.splitlines()[0]
        assert "READ-ONLY" in header and "not writable by this user" in header, header
        terminal.keys("d")
        screen = terminal.wait_for(lambda s: "prune is off" in s, "the refusal of d")
        assert "not writable by this user" in screen
        terminal.keys("q")
        assert terminal.exit_code() == 0
    finally:
        if not as_root:
            for path in [root, *root.rglob("*")]:
                path.chmod(0o755 if path.is_dir() else 0o644)
    assert _listing(root) == before


def _listing(root: Path) -> list[tuple[str, int, int]]:
    """Every file under the store with its size and modification time (SQLite's own
    ``-wal`` and ``-shm`` files aside: a reader may make them where it can)."""
    return sorted(
        (str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    )
