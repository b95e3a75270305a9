"""The mount table follows a rename: a layer renamed (``rm-<id>`` and back) with a mount
inside is found under its new name, not its old one. A rename is no mount event, so
the table is read afresh at every ask (a cache told only of mount events went stale)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from cachetui.core import CacheManager, fsops
from tests.mounting import canary, canary_intact, mount

__all__ = ["canary", "mount"]  # fixtures, used by name


def test_a_renamed_directory_moves_its_mount_in_the_table(
    tmp_path: Path, mount: Callable[..., None]
) -> None:
    old, new = tmp_path / "a", tmp_path / "b"
    (old / "sub").mkdir(parents=True)
    mount(None, old / "sub")
    assert fsops.mounts_below(tmp_path) == [str(old / "sub")]
    os.rename(old, new)  # by this process or any other: no one tells the table
    assert fsops.mounts_below(new) == [str(new / "sub")]
    assert fsops.mounts_below(tmp_path) == [str(new / "sub")]


def test_a_retired_layer_is_refused_by_name_for_its_mount(
    tmp_path: Path, canary: Path, mount: Callable[..., None]
) -> None:
    """The table read while the layer had its own name; the layer is then retired:
    the purge still finds the mount in ``rm-<id>`` and refuses it by name."""
    with CacheManager.open(tmp_path / "store") as cm:
        ref = cm.new(retain=True)
        upper = ref.mount().upper
        assert upper is not None
        (upper / "sub").mkdir()
        ref.release()
        snapshots = cm.snapshots
        mount(canary, upper / "sub")
        assert snapshots.mounts_in({ref.id}) == {ref.id: [str(upper / "sub")]}
        retired = snapshots.retire(ref.id)
        assert retired is not None
        assert snapshots.mounts_in({retired.name}) == {retired.name: [str(retired / "sub")]}
        [(path, error)] = snapshots.purge([retired])
        assert path == retired and "refusing to remove" in str(error)
        snapshots.unretire(ref.id)
        assert snapshots.mounts_in({ref.id}) == {ref.id: [str(upper / "sub")]}
    canary_intact(canary)
