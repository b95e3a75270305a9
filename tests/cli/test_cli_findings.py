"""What a new user ran into on the command line, each as a real subprocess.

A duration without a unit, a record type that does not exist, a store the user may not
read, ``du | head -1``, Ctrl-C at the prompt (in a real terminal: tmux), ``--version``,
the demo's temporary store, and a dry run that frees far more than the limit asked for.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cachetui.core import CacheManager
from cachetui.units import format_bytes_buildx
from tests.cli.test_cli import Store, build_store, removed_ids, run
from tests.conftest import FakeClock, write_file
from tests.terminal import Terminal, needs_tmux

DAY = 86400.0


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return build_store(tmp_path / "store")


# -- input that must be refused ------------------------------------------------------------


def test_duration_without_unit_is_refused_saying_what_to_write(store: Store) -> None:
    result = run("prune", "--root", str(store.root), "--keep-duration", "10", "--dry-run")
    assert result.returncode == 2
    assert result.stdout == ""
    message = result.stderr.strip()
    assert message.startswith("cachetui: invalid --keep-duration '10': missing unit")
    assert "10s" in message and "10h" in message  # what to write instead
    assert "Traceback" not in result.stderr
    # "0" needs no unit (as in Go), and a unit makes 10 fine
    for good in ("0", "10s"):
        ok = run("prune", "--root", str(store.root), "--keep-duration", good, "--dry-run")
        assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("text", ["type==bogus", "type!=regularr", "mutable,type==Regular"])
def test_unknown_record_type_is_refused_naming_the_types(store: Store, text: str) -> None:
    for command in ("du", "prune"):
        args = [command, "--root", str(store.root), "--filter", text]
        result = run(*args, *(["--dry-run"] if command == "prune" else []))
        assert result.returncode == 2, result.stdout
        assert result.stdout == ""
        first = result.stderr.splitlines()[0]
        assert "unknown record type" in first
        for known in ("regular", "source.local", "exec.cachemount", "frontend"):
            assert known in first
        # the caret points at the value
        shown, caret = result.stderr.splitlines()[1:3]
        value = text.split("=")[-1]
        assert caret.index("^") == shown.index(value, shown.index("type"))


def test_a_store_the_user_cannot_read_gets_a_sentence_not_an_errno(tmp_path: Path) -> None:
    if shutil.which("setpriv") is None and os.environ.get("CI") != "true":
        pytest.skip("needs setpriv (util-linux)")
    store = build_store(tmp_path / "store")
    db = store.root / "metadata.db"
    db.chmod(0)
    try:
        if os.geteuid() == 0:
            # root reads anything: drop the two capabilities that let it (a real EACCES)
            prefix = [
                "setpriv",
                "--inh-caps=-dac_override,-dac_read_search",
                "--bounding-set=-dac_override,-dac_read_search",
            ]
        else:
            prefix = []
        for args in (["du"], ["prune", "--dry-run"], ["doctor"]):
            result = subprocess.run(
                [*prefix, "cachetui", *args, "--root", str(store.root)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 1, (args, result.stdout, result.stderr)
            message = result.stderr.strip()
            assert "Errno" not in message and "Traceback" not in message
            assert str(db) in message
            assert "permission" in message.lower()
            assert "owner" in message or "chmod" in message  # what to do about it
    finally:
        db.chmod(0o644)


# -- leaving quietly -----------------------------------------------------------------------


def test_du_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with CacheManager.open(root) as cm:
        for i in range(60):  # ~2 kB of verbose output each: far more than a pipe holds
            cm.new(description=f"record {i} " + "x" * 2000, retain=True).release()
    process = subprocess.Popen(
        ["cachetui", "du", "--verbose", "--root", str(root)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()  # like `head -1`: the reader goes away
    err = process.stderr.read()
    code = process.wait(60)
    assert first.startswith(b"ID:")
    assert err == b""
    assert code in (0, 141)


def test_version() -> None:
    import cachetui

    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"cachetui {cachetui.__version__}"


# -- a real terminal: tmux -----------------------------------------------------------------


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Terminal]:
    needs_tmux()
    terminal = Terminal(tmp_path, width=100, height=30)
    try:
        yield terminal
    finally:
        terminal.close()


def test_ctrl_c_at_the_prompt_prints_the_message_on_its_own_line(
    store: Store, tmux: Terminal
) -> None:
    tmux.type(f"cachetui prune --root {store.root}; echo EXIT=$?")
    tmux.wait_for(lambda s: "[y/N]" in s, "the confirmation prompt")
    tmux.keys("C-c")
    assert tmux.exit_code() == 130
    screen = tmux.history()
    lines = [line.rstrip() for line in screen.splitlines()]
    assert "cachetui: interrupted" in lines, screen
    prompt = next(line for line in lines if "[y/N]" in line)
    assert "interrupted" not in prompt
    assert len(store.visible()) == 6  # nothing removed


def _demo_roots(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("cachetui-demo-*"))


@pytest.mark.parametrize("keep", [False, True])
def test_demo_without_root_says_where_and_cleans_up(
    tmp_path: Path, tmux: Terminal, keep: bool
) -> None:
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "precious").write_text("keep me")
    flags = " --keep" if keep else ""
    tmux.type(f"cachetui demo --no-live{flags}; echo EXIT=$?")
    # the dashboard is up once its store exists and the screen shows records
    tmux.wait_for(lambda s: "records" in s, "the dashboard", 120)
    [root] = _demo_roots(tmp_path)
    layer = next(p for p in (root / "snapshots").iterdir() if p.is_dir())
    (layer / "link-out").symlink_to(canary)  # removing the store must not follow it
    tmux.keys("q")
    assert tmux.exit_code() == 0, tmux.screen()
    screen = tmux.history()
    said = " ".join(screen.split())
    assert f"demo store: {root}" in said
    if keep:
        assert root.is_dir() and (root / "metadata.db").is_file()
        assert f"kept the demo store {root}" in said
    else:
        assert not root.exists()
        assert f"removed the demo store {root}" in said
    assert (canary / "precious").read_text() == "keep me"


def test_demo_build_only_keeps_its_store_and_prints_it(tmp_path: Path) -> None:
    result = run("demo", "--build-only", env={"TMPDIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    [root] = _demo_roots(tmp_path)
    assert result.stdout.strip() == str(root)
    assert (root / "metadata.db").is_file()


# -- a dry run that frees more than the limit asked for ------------------------------------


def _used_layer(cm: CacheManager, clock: FakeClock, when: float, size: int, desc: str) -> str:
    clock.now = when
    ref = cm.new(description=desc)
    write_file(ref.mount().upper, "data", size)
    committed = ref.commit()
    committed.finalize()
    committed.release()
    return committed.id


def test_reserved_space_dry_run_explains_why_it_frees_more(tmp_path: Path) -> None:
    """``--reserved-space`` alone is BuildKit's cap: records go least recently (and least
    frequently) used first until at most that much remains, so a large old record can take
    the total far below.

    Three records, each used once: ``small`` (oldest, 40 kB), ``big`` (2 MB), ``recent``
    (newest, 200 kB). The limit is the total minus 60 kB: removing ``small`` leaves the
    total 20 kB too high, so ``big`` goes next although 20 kB would have done.
    """
    root = tmp_path / "store"
    now = time.time()
    clock = FakeClock(now - 30 * DAY)
    with CacheManager.open(root, clock=clock) as cm:
        small = _used_layer(cm, clock, now - 3 * DAY, 40_960, "small, oldest")
        big = _used_layer(cm, clock, now - 2 * DAY, 2_048_000, "big")
        recent = _used_layer(cm, clock, now - 1 * DAY, 204_800, "recent, newest")
        sizes = {info.id: info for info in cm.disk_usage()}
    assert {i.usage_count for i in sizes.values()} == {1}  # ranked by last use alone
    total = sum(info.size for info in sizes.values())
    limit = total - 60_000
    assert total - sizes[small].size > limit  # removing small alone is not enough

    result = run("prune", "--root", str(root), "--reserved-space", f"{limit}B", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert removed_ids(result.stdout) == [small, big]  # hand-computed: oldest first
    freed = sizes[small].size + sizes[big].size
    text = result.stdout
    assert f"Would free:\t{format_bytes_buildx(freed)}" in text
    explained = " ".join(text.split())
    assert f"keep at most {format_bytes_buildx(limit)} of {format_bytes_buildx(total)}" in explained
    assert "--reserved-space alone is a cap" in explained
    assert "least recently and least frequently used first" in explained
    left = total - sizes[small].size - limit  # what was left to free before big went
    assert (
        f"{big}" in explained and f"{format_bytes_buildx(left)} that was left to free" in explained
    )
    assert recent in {i.id for i in _visible(root)}  # a dry run removes nothing
    assert len(_visible(root)) == 3


def _visible(root: Path):
    with CacheManager.open(root) as cm:
        return cm.disk_usage()


def test_space_limit_explanation_names_the_other_flags(store: Store) -> None:
    regular = sum(i.size for i in store.visible().values() if i.record_type == "regular")
    result = run("prune", "--root", str(store.root), "--max-used-space", f"{regular}B", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "(--max-used-space)" in " ".join(result.stdout.split())
    nothing = run("prune", "--root", str(store.root), "--min-free-space", "1B", "--dry-run")
    assert nothing.returncode == 0, nothing.stderr
    assert removed_ids(nothing.stdout) == []
    assert "the disk already has --min-free-space free" in " ".join(nothing.stdout.split())
