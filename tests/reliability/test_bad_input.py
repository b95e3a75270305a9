"""D. Bad input: rejected with the right error, before any file or SQL access, and
nothing on disk changes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachetui.core import (
    CacheManager,
    FilterSyntaxError,
    InvalidError,
    NotFoundError,
    PruneOptions,
    StoreError,
)
from cachetui.core import filters as filter_language
from cachetui.core.ids import ID_PATTERN, new_id, validate_id
from cachetui.core.store import Store
from cachetui.units import parse_duration, parse_size
from tests.reliability.conftest import tree

BAD_IDS = [
    "../x",
    "../" + "a" * 22,
    "/etc",
    "a/b",
    ".",
    "..",
    "",
    "x\0y",
    "a" * 24 + "\0",
    "a" * 24,
    "a" * 26,
    "a" * 10_000,
    "A" * 25,
    "abcdefghijklmnopqrstuvwxY",
    "ａ" * 25,  # full-width look-alikes
    "a" * 24 + "-",
    "a" * 24 + "\n",
    None,
    25,
    b"a" * 25,
]


@pytest.fixture
def store_with_record(cm: CacheManager) -> tuple[CacheManager, str]:
    ref = cm.new()
    (ref.mount().upper / "f").write_bytes(b"f" * 100)
    imm = ref.commit()
    imm.finalize()
    imm.release()
    return cm, imm.id


@pytest.fixture
def no_sql_no_files(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Make any SQL or snapshot-path access fail loudly while a bad id is handled."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("touched the store before validating the id")

    def arm() -> None:
        for name in ("rows", "execute", "write", "read"):
            monkeypatch.setattr(Store, name, refuse)
        monkeypatch.setattr(os, "stat", refuse)
        monkeypatch.setattr(os, "lstat", refuse)
        monkeypatch.setattr(os, "rename", refuse)

    return arm


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_bad_ids_rejected_before_sql_and_files(
    store_with_record: tuple[CacheManager, str],
    no_sql_no_files,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    bad: object,
) -> None:
    """Every entry point that takes an id; SQL and stat/rename are booby-trapped."""
    cm, _ = store_with_record
    before = tree(cm.root)
    no_sql_no_files()
    try:
        for call in (cm.get, cm.get_mutable, cm.snapshots.path, cm.snapshots.trash_path):
            with pytest.raises(InvalidError):
                call(bad)  # type: ignore[arg-type]
    finally:
        monkeypatch.undo()
    assert tree(cm.root) == before


@given(st.text(max_size=40))
def test_any_text_not_matching_the_pattern_is_rejected(text: str) -> None:
    """The regex is the only gate; generated ids always pass."""
    if ID_PATTERN.fullmatch(text):
        assert validate_id(text) == text
    else:
        with pytest.raises(InvalidError):
            validate_id(text)
    assert validate_id(new_id())


def test_unknown_valid_id_is_not_found(cm: CacheManager) -> None:
    """NotFoundError, also a KeyError."""
    rid = new_id()
    with pytest.raises(NotFoundError) as caught:
        cm.get(rid)
    assert isinstance(caught.value, KeyError) and rid in str(caught.value)


BAD_FILTERS = ["type==", "id~=(", "colour==red", "inuse==maybe", "==x", "id==a,,", ",", "id~="]


@pytest.mark.parametrize("text", BAD_FILTERS)
def test_malformed_filters(store_with_record: tuple[CacheManager, str], text: str) -> None:
    """FilterSyntaxError with a position; a prune with a bad filter deletes nothing."""
    cm, rid = store_with_record
    before = tree(cm.root)
    with pytest.raises(FilterSyntaxError) as caught:
        cm.disk_usage([text])
    assert caught.value.position >= 0
    with pytest.raises(FilterSyntaxError):
        # the bad filter is in the second policy: the first one (valid, all) must not run
        cm.prune(PruneOptions(all=True), PruneOptions(filters=(text,)))
    assert tree(cm.root) == before
    assert [u.id for u in cm.disk_usage()] == [rid]


@given(st.text(max_size=30))
def test_filter_parser_raises_only_filter_syntax_error(text: str) -> None:
    """Nothing but FilterSyntaxError escapes the parser."""
    try:
        filter_language.parse_all([text])
    except FilterSyntaxError:
        pass


@pytest.mark.parametrize(
    "kwargs",
    [
        {"keep_duration": -1},
        {"reserved_space": -1},
        {"max_used_space": -5},
        {"min_free_space": -1},
        {"keep_duration": "soon"},
        {"reserved_space": 1.5},
        {"filters": ("id==x", 3)},
        {"filters": None},
        {"all": "no"},
        {"all": 1},
    ],
)
def test_nonsense_prune_options(kwargs: dict) -> None:
    """Negative or mistyped fields fail when the options are built."""
    with pytest.raises(InvalidError):
        PruneOptions(**kwargs)


def test_single_filter_string_is_one_filter() -> None:
    """A bare string is one filter, never split into characters."""
    assert PruneOptions(filters="id==x").filters == ("id==x",)


def test_prune_all_without_confirmation_in_a_script(
    store_with_record: tuple[CacheManager, str],
) -> None:
    """Non-interactive ``prune --all`` without --force is refused (exit 2)."""
    cm, rid = store_with_record
    before = tree(cm.root)
    command = [sys.executable, "-m", "cachetui", "--root", str(cm.root), "prune", "--all"]
    refused = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert refused.returncode == 2, refused.stderr
    assert tree(cm.root) == before
    dry = subprocess.run([*command, "--dry-run"], stdin=subprocess.DEVNULL, capture_output=True)
    assert dry.returncode == 0
    assert [u.id for u in cm.disk_usage()] == [rid]


def test_root_is_a_file(tmp_path: Path) -> None:
    """InvalidError naming it, the file untouched."""
    target = tmp_path / "file"
    target.write_bytes(b"not a store")
    with pytest.raises(InvalidError, match="file"):
        CacheManager.open(target)
    assert target.read_bytes() == b"not a store"
    assert os.listdir(tmp_path) == ["file"]


def test_root_missing_is_created_unless_read_only(tmp_path: Path) -> None:
    """Open creates a missing root (as the API promises); read-only open refuses."""
    with pytest.raises(NotFoundError):
        CacheManager.open(tmp_path / "absent", read_only=True)
    assert not (tmp_path / "absent").exists()
    with CacheManager.open(tmp_path / "absent") as cm:
        assert cm.disk_usage() == []


def test_read_only_root(store_with_record: tuple[CacheManager, str]) -> None:
    """A really read-only root (a read-only bind mount: chmod does not stop root).

    Writable open refuses with StoreError; ``read_only=True`` opens, lists, and refuses
    destructive work; the tree is unchanged.
    """
    cm, rid = store_with_record
    root = cm.root
    cm.close()
    before = tree(root)
    if subprocess.run(["mount", "--bind", str(root), str(root)]).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(root)]).returncode:
            pytest.skip("cannot remount read-only here")
        with pytest.raises(StoreError, match="not writable"):
            CacheManager.open(root)
        with CacheManager.open(root, read_only=True) as ro:
            assert [u.id for u in ro.disk_usage()] == [rid]
            with pytest.raises(StoreError, match="read-only"):
                ro.prune(PruneOptions(all=True))
            with pytest.raises(StoreError):
                ro.new()
            with pytest.raises(StoreError):
                ro.get(rid)
    finally:
        subprocess.run(["umount", str(root)], check=False)
    assert tree(root) == before


@pytest.mark.parametrize(
    ("parse", "text", "key"),
    [
        (parse_size, "10QB", "--max-used-space"),
        (parse_size, "-5GB", "--reserved-space"),
        (parse_size, "", "--min-free-space"),
        (parse_duration, "3 fortnights", "--keep-duration"),
        (parse_duration, "-1h", "--keep-duration"),
    ],
)
def test_malformed_config_values_name_the_key(parse, text: str, key: str) -> None:  # type: ignore[no-untyped-def]
    """A validation error naming the key, never a silent default."""
    with pytest.raises(InvalidError, match=key):
        parse(text, what=key)
