"""The change feed narrowed to some layers: writes elsewhere are not watched (no inotify
watch is spent on them), a layer added to the set is reported once for what was written
before its watch existed, then followed like any other."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from cachetui.core import CacheManager, ChangeFeed, ChangeSet


def _until(seen: list[ChangeSet], test: Callable[[set[str]], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        records = {r for c in list(seen) for r in c.records}
        if test(records):
            return
        assert time.monotonic() < deadline, f"{what}: saw {records}"
        time.sleep(0.01)


def test_only_the_given_layers_are_watched(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with CacheManager.open(root) as cm:
        a, b = cm.new(description="a"), cm.new(description="b")
        upper_a, upper_b = a.mount().upper, b.mount().upper
        assert upper_a is not None and upper_b is not None
        seen: list[ChangeSet] = []
        feed = ChangeFeed(root, seen.append)
        feed.watch_layers({a.id})
        feed.start()
        try:
            # a layer newly watched is reported once, for writes made before its watch
            _until(seen, lambda r: a.id in r, "a reported when first watched")
            seen.clear()
            (upper_b / "unwatched").write_bytes(b"x" * 1000)
            (upper_a / "sub").mkdir()
            (upper_a / "sub" / "f").write_bytes(b"x" * 1000)
            _until(seen, lambda r: a.id in r, "a write inside a watched layer")
            time.sleep(0.3)
            assert not any(b.id in c.records for c in seen), "b is not watched"

            seen.clear()
            feed.watch_layers({a.id, b.id})
            _until(seen, lambda r: b.id in r, "b reported once when added")
            seen.clear()
            (upper_b / "now-watched").write_bytes(b"y" * 10)
            _until(seen, lambda r: b.id in r, "a write in b once watched")

            feed.watch_layers(())  # nothing to watch: the watcher idles, still stoppable
            time.sleep(0.3)
            seen.clear()
            (upper_a / "g").write_bytes(b"z")
            time.sleep(0.3)
            assert not any(c.records for c in seen)
        finally:
            started = time.monotonic()
            feed.stop()
            assert time.monotonic() - started < 1.5
            assert not feed.running
            a.release()
            b.release()
        assert not feed.errors
