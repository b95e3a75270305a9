"""``CacheManager.open(..., repair=False)``: a look, reported as read-only, writing nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cachetui.core import CacheManager, StoreError


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_look_is_read_only_and_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "s"
    with CacheManager.open(root) as cm:
        with cm.new(description="one") as ref:
            (ref.mount().upper / "f").write_bytes(b"x" * 10)  # type: ignore[union-attr]
            snapshot = ref.commit()
        snapshot.finalize()
        snapshot.release()
        assert not cm.read_only
    before = _digest(root / "metadata.db")
    with CacheManager.open(root, repair=False) as cm:
        assert cm.read_only
        assert len(cm.disk_usage()) == 1
        with pytest.raises(StoreError):
            cm.new(description="two")
    assert _digest(root / "metadata.db") == before
