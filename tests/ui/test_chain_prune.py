"""Pruning a whole chain from the dashboard, and setting labels: ``x`` marks a record
with everything below it (the core's plan says whether it can go), ``d`` shows the bytes
that really go and prunes it in one confirmation, leaves first; a record inside held by
another real process stops it with the reason. A canary outside the store must survive.
Real stores, real processes, Pilot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from cachetui.screens.dialogs import ConfirmPruneScreen
from cachetui.screens.labels import LabelScreen, parse_label_words
from cachetui.screens.policy import PolicyPruneScreen
from tests.mounting import canary, canary_intact, mount
from tests.ui.conftest import loaded, make_app, settle, wait_for

__all__ = ["canary", "mount"]  # fixtures, used by name

pytestmark = pytest.mark.anyio

WORKERS = Path(__file__).parents[1] / "reliability" / "workers.py"
CANARY = b"outside the store\n" * 64
CHAIN = ("build", "test", "dist", "strip")


def _canary(root: Path, ids: dict[str, str]) -> Path:
    """A file outside the store, linked from inside the chain's deepest layer."""
    outside = root.parent / "canary"
    outside.mkdir()
    (outside / "keep").write_bytes(CANARY)
    os.symlink(outside, root / "snapshots" / ids["strip"] / "to-canary")
    os.symlink(outside / "keep", root / "snapshots" / ids["dist"] / "to-keep")
    return outside


class Holder:
    """Another process holding one record (``workers.py hold``) until stopped."""

    def __init__(self, root: Path, record_id: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(WORKERS), "hold", str(root), record_id],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        event = json.loads(self.process.stdout.readline())
        assert event["event"] == "holding" and event["id"] == record_id
        self.pid = self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.write("\n")
            self.process.stdin.flush()
            self.process.wait(timeout=30)


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for holder in started:
        if holder.process.poll() is None:
            holder.process.kill()
            holder.process.wait()


async def _mark_chain(pilot, app, record_id: str) -> None:  # type: ignore[no-untyped-def]
    app.ref_tree.select_id(record_id)
    await settle(pilot)
    notes = len(app.notes)
    await pilot.press("x")
    await wait_for(pilot, lambda: len(app.notes) > notes, what="the chain's plan")
    await settle(pilot)


async def test_x_marks_a_chain_and_d_prunes_it_leaves_first(store):
    root, ids = store
    canary = _canary(root, ids)
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        await _mark_chain(pilot, app, ids["build"])
        assert app.marks == {ids[n] for n in CHAIN}
        assert "marked the chain of" in app.notes[-1][1]
        assert "4 records, frees 11MB" in app.notes[-1][1]
        totals = str(app.query_one("#totals", Static).render())
        assert "Marked 4 (11MB)" in totals
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmPruneScreen))
        screen = app.screen
        plan = screen.plan
        assert plan.chains == (ids["build"],)
        assert plan.ids == tuple(ids[n] for n in reversed(CHAIN))  # leaves first
        assert plan.freed == 11_000_000
        title = str(screen.query_one(".title", Static).render())
        assert f"Prune the chain of {ids['build']}: 4 records, leaves first?" in title
        assert "This frees 11MB." in title
        assert app.focused is not None and app.focused.id == "no"
        await pilot.press("y")
        await wait_for(pilot, lambda: ids["build"] not in app.ref_tree.nodes, what="the prune")
        await settle(pilot)
        for name in CHAIN:
            assert not (root / "snapshots" / ids[name]).exists()
        assert (root / "snapshots" / ids["pip"]).exists()  # the chain's parent stays
        assert app.marks == set()
        assert any("pruned 4 records, freed 11MB" in n for _, n in app.notes)
    assert (canary / "keep").read_bytes() == CANARY


async def test_a_record_held_by_another_process_stops_the_chain(store, holders):
    root, ids = store
    canary = _canary(root, ids)
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        holder = Holder(root, ids["test"])
        holders.append(holder)
        app.main.reload()
        await wait_for(pilot, lambda: app.service.view.rows[ids["test"]].held, what="the hold")
        await _mark_chain(pilot, app, ids["build"])
        note = app.notes[-1][1]
        assert f"cannot mark the chain of {ids['build'][:12]}" in note
        assert f"it is held by pid {holder.pid}" in note
        assert app.marks == set()
        holder.stop()
        app.main.reload()
        await wait_for(pilot, lambda: not app.service.view.rows[ids["test"]].held)
        await _mark_chain(pilot, app, ids["build"])
        assert app.marks == {ids[n] for n in CHAIN}
        # a build takes the test layer again after the marking: the prune stops
        again = Holder(root, ids["test"])
        holders.append(again)
        notes = len(app.notes)
        await pilot.press("d")
        await wait_for(pilot, lambda: len(app.notes) > notes, what="the refusal")
        note = app.notes[-1][1]
        assert not isinstance(app.screen, ConfirmPruneScreen)
        assert "cannot prune the chain" in note and f"pid {again.pid}" in note
        assert "nothing was removed" in note
        for name in CHAIN:
            assert (root / "snapshots" / ids[name]).exists()
        again.stop()
    assert (canary / "keep").read_bytes() == CANARY


async def test_a_mount_inside_the_chain_is_named_when_marking_it(store, canary, mount):
    """The chain's refusal on screen is the core's: the mount point, in prune's words."""
    root, ids = store
    layer = root / "snapshots" / ids["dist"]
    (layer / "mnt").mkdir()
    mount(canary, layer / "mnt")
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        await _mark_chain(pilot, app, ids["build"])
        note = app.notes[-1][1]
        assert f"cannot mark the chain of {ids['build'][:12]}: {ids['dist'][:12]} inside" in note
        assert f"{layer / 'mnt'} is mounted inside its layer (unmount it first)" in note
        assert app.marks == set()
        for name in CHAIN:
            assert (root / "snapshots" / ids[name]).exists()
    canary_intact(canary)


async def test_x_unmarks_and_a_record_inside_a_chain_is_not_marked_alone(store):
    root, ids = store
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        await _mark_chain(pilot, app, ids["build"])
        app.ref_tree.select_id(ids["dist"])
        await pilot.press("space")
        assert f"marked with the chain of {ids['build'][:12]}" in app.notes[-1][1]
        await pilot.press("x")
        assert f"in the chain of {ids['build'][:12]}" in app.notes[-1][1]
        assert app.marks == {ids[n] for n in CHAIN}
        app.ref_tree.select_id(ids["build"])
        await pilot.press("x")
        assert app.marks == set()
        # a parent alone is refused by the core's rule, with the way to take its chain
        await pilot.press("space")
        assert "cannot mark" in app.notes[-1][1]
        assert "x marks it with everything below it" in app.notes[-1][1]


async def test_x_and_labels_are_off_in_read_only_mode(store):
    root, ids = store
    app = make_app(root, read_only=True)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        app.ref_tree.select_id(ids["old"])
        await pilot.press("x")
        assert "mark a whole chain is off" in app.notes[-1][1]
        await pilot.press("L")
        assert "label is off" in app.notes[-1][1]
        assert app.marks == set()
        assert not isinstance(app.screen, LabelScreen)


async def test_labels_are_set_and_removed_from_the_dashboard(store):
    root, ids = store
    app = make_app(root)
    async with app.run_test(size=(130, 40)) as pilot:
        await loaded(pilot)
        app.ref_tree.select_id(ids["old"])
        await settle(pilot)
        await pilot.press("L")
        await wait_for(pilot, lambda: isinstance(app.screen, LabelScreen))
        dialog = app.screen
        await pilot.press(*"team")  # neither key=value nor key-
        await pilot.press("enter")
        await settle(pilot)
        assert "write key=value" in str(dialog.query_one("#label-error", Static).render())
        dialog.query_one("#label-input", Input).value = ""
        await pilot.press(*"-x=1")  # the core refuses the key: said in the dialog
        await pilot.press("enter")
        await wait_for(
            pilot, lambda: "invalid label key" in str(dialog.query_one("#label-error").render())
        )
        assert app.screen is dialog
        dialog.query_one("#label-input", Input).value = ""
        await pilot.press(*"team=infra tier=gold", "enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, LabelScreen))
        await settle(pilot)
        assert f"labels of {ids['old'][:12]}: team=infra, tier=gold" in app.notes[-1][1]
        await wait_for(pilot, lambda: app.service.view.rows[ids["old"]].labels != ())
        assert app.service.view.rows[ids["old"]].labels == (("team", "infra"), ("tier", "gold"))
        await wait_for(pilot, lambda: "team=infra" in str(app.query_one("#details").render()))
        await pilot.press("L")
        await wait_for(pilot, lambda: isinstance(app.screen, LabelScreen))
        await pilot.press(*"tier-", "enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, LabelScreen))
        await wait_for(
            pilot, lambda: app.service.view.rows[ids["old"]].labels == (("team", "infra"),)
        )
        # and the filter finds it
        await pilot.press("slash", *"label.team==infra")
        await wait_for(pilot, lambda: app.ref_tree.matches == {ids["old"]}, what="the filter")


def test_label_words_follow_kubectl() -> None:
    assert parse_label_words("team=infra tier-  note=") == {
        "team": "infra",
        "tier": None,
        "note": "",
    }
    for bad in ("", "team", "=x", "-"):
        with pytest.raises(ValueError):
            parse_label_words(bad)


async def test_a_policy_prune_goes_past_a_mounted_layer_and_says_why_it_stayed(
    store, canary, mount
):
    """``p``: the mounted layer stays with the core's reason on screen; the rest goes."""
    root, ids = store
    layer = root / "snapshots" / ids["old"]
    (layer / "mnt").mkdir()
    mount(canary, layer / "mnt")
    app = make_app(root)
    async with app.run_test(size=(130, 40)) as pilot:
        await loaded(pilot)
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, PolicyPruneScreen))
        screen = app.screen
        screen.query_one("#filters", Input).value = "type==regular"
        await pilot.pause()
        screen.action_preview()
        await wait_for(pilot, lambda: screen.plan is not None, what="the dry run")
        planned = set(screen.plan.ids)
        assert planned and ids["old"] not in planned
        preview = str(screen.query_one("#summary", Static).render())
        assert f"Would keep 1 record: {ids['old'][:12]}: {layer / 'mnt'} is mounted" in preview
        screen.action_prune()
        await wait_for(pilot, lambda: screen.finished, what="the prune")
        summary = str(screen.query_one("#summary", Static).render())
        assert summary.startswith(f"Done: removed {len(planned)} records")
        assert f"Kept 1 record: {ids['old'][:12]}: {layer / 'mnt'} is mounted inside" in summary
        for record_id in planned:
            assert not (root / "snapshots" / record_id).exists()
        assert (root / "snapshots" / ids["old"]).is_dir()
    canary_intact(canary)


async def test_d_on_a_mounted_layer_names_the_mount(store, canary, mount):
    root, ids = store
    layer = root / "snapshots" / ids["old"]
    (layer / "mnt").mkdir()
    mount(canary, layer / "mnt")
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        app.ref_tree.select_id(ids["old"])
        await settle(pilot)
        notes = len(app.notes)
        await pilot.press("d")
        await wait_for(pilot, lambda: len(app.notes) > notes, what="the refusal")
        note = app.notes[-1][1]
        assert not isinstance(app.screen, ConfirmPruneScreen)
        assert f"{ids['old'][:12]}: {layer / 'mnt'} is mounted inside its layer" in note
        assert layer.is_dir()
    canary_intact(canary)
