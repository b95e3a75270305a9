"""Pilot tests: every key and flow of the dashboard against real stores on disk."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from textual.command import CommandPalette
from textual.widgets import Button, Input, Static

from cachetui.core import CacheManager
from cachetui.screens.dialogs import ConfirmPruneScreen, ForceReleaseScreen
from cachetui.screens.help import HelpScreen
from cachetui.screens.policy import PolicyPruneScreen
from cachetui.views import state_words
from cachetui.widgets.sorting import Sort
from tests.ui.conftest import loaded, make_app, settle, wait_for
from tests.ui.store_fixture import FixedClock

pytestmark = pytest.mark.anyio


def top_level(app) -> list[str]:
    return [node.data for node in app.ref_tree.root.children]


async def test_opens_with_roots_sorted_by_size(store):
    root, ids = store
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        assert top_level(app) == [ids["old"], ids["gomod"], ids["alpine"], ids["frontend"]]
        assert app.ref_tree.cursor_id == ids["old"]
        assert app.details is not None and app.details.record.id == ids["old"]
        # children are added lazily
        assert ids["apt"] not in app.ref_tree.nodes


async def test_expand_collapse_and_details(store):
    root, ids = store
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        assert app.ref_tree.select_id(ids["alpine"])
        await pilot.press("right")
        await settle(pilot)
        node = app.ref_tree.nodes[ids["alpine"]]
        assert node.is_expanded
        assert [c.data for c in node.children] == [ids["apt"], ids["local"]]
        await pilot.press("down", "right", "down")
        await settle(pilot)
        assert app.ref_tree.cursor_id == ids["pip"]
        d = app.details
        assert d is not None and d.record.id == ids["pip"]
        assert [c[0] for c in d.chain] == [ids["apt"], ids["alpine"]]
        assert d.holders and d.holders[0].pid == 4242 and d.holders[0].alive
        assert d.prune_refused and d.prune_frees == 0
        text = str(app.query_one("#details", Static).render())
        assert "pid 4242 on ci-runner-7" in text
        # the parent is in use because of its descendant
        app.ref_tree.select_id(ids["apt"])
        await settle(pilot)
        assert app.details.in_use_because in (ids["pip"], ids["npm"])
        await pilot.press("left")
        assert not app.ref_tree.nodes[ids["apt"]].is_expanded
        await pilot.press("left")  # collapsed: goes to the parent
        assert app.ref_tree.cursor_id == ids["alpine"]


async def test_sort_keys_keep_the_cursor(store):
    root, ids = store
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        app.ref_tree.select_id(ids["gomod"])
        await pilot.press("M")
        assert app.ref_tree.sort == Sort("last used")
        assert top_level(app)[0] == ids["frontend"]  # used 5 minutes ago
        assert app.ref_tree.cursor_id == ids["gomod"]
        await pilot.press("n")
        assert app.ref_tree.sort == Sort("name")
        assert top_level(app)[0] == ids["frontend"]  # "docker/dockerfile" sorts first
        await pilot.press("S")
        assert app.ref_tree.sort == Sort("size")
        assert app.ref_tree.cursor_id == ids["gomod"]


async def test_mark_refuses_held_and_parents(store):
    root, ids = store
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        app.ref_tree.select_id(ids["old"])
        await pilot.press("space")
        assert app.marks == {ids["old"]}
        assert app.ref_tree.cursor_id == ids["gomod"]  # marking moves down
        await pilot.press("space")
        assert app.marks == {ids["old"], ids["gomod"]}
        app.ref_tree.select_id(ids["alpine"])
        await pilot.press("space")  # in use through a descendant, and has children
        assert ids["alpine"] not in app.marks
        assert "cannot mark" in app.notes[-1][1]
        app.ref_tree.select_id(ids["pip"])
        await pilot.press("space")
        assert "held by pid 4242 on ci-runner-7" in app.notes[-1][1]
        app.ref_tree.select_id(ids["old"])
        await pilot.press("space")  # unmark
        assert app.marks == {ids["gomod"]}


async def test_prune_marked_with_confirmation(store):
    root, ids = store
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        app.ref_tree.select_id(ids["old"])
        await pilot.press("space", "space")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmPruneScreen))
        screen = app.screen
        assert screen.plan.freed == 730_000_000 + 187_000_000
        assert set(screen.plan.ids) == {ids["old"], ids["gomod"]}
        assert app.focused is not None and app.focused.id == "no"
        await pilot.press("enter")  # "No" is focused: nothing happens
        await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmPruneScreen))
        assert (root / "snapshots" / ids["old"]).exists()
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmPruneScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: ids["old"] not in app.ref_tree.nodes, what="prune")
        await settle(pilot)
        assert ids["gomod"] not in app.ref_tree.nodes
        assert not (root / "snapshots" / ids["old"]).exists()
        assert app.marks == set()
        assert any("freed 917MB" in n for _, n in app.notes)


async def test_prune_selected_and_refusals(store):
    root, ids = store
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        app.ref_tree.select_id(ids["alpine"])
        await pilot.press("d")
        assert "cannot prune" in app.notes[-1][1]
        assert not isinstance(app.screen, ConfirmPruneScreen)
        app.ref_tree.select_id(ids["frontend"])
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmPruneScreen))
        assert app.screen.plan.ids == (ids["frontend"],)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmPruneScreen))
        assert ids["frontend"] in app.ref_tree.nodes


async def test_filter_validates_and_shows_caret(store):
    root, ids = store
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"type==frontend")
        await settle(pilot)
        assert top_level(app) == [ids["frontend"]]
        await pilot.press("enter")
        assert app.focused is app.ref_tree
        await pilot.press("slash")
        app.query_one("#filter", Input).value = ""
        await pilot.press(*"type=")
        await settle(pilot)
        error = str(app.query_one("#filter-error", Static).render())
        assert "^" in error
        caret = error.index("^") - 2
        assert caret >= 4
        assert len(top_level(app)) == 4  # the last valid filter ("type") stays
        # a child match shows its ancestors (dimmed) above it
        app.query_one("#filter", Input).value = "description~=pip"
        await settle(pilot)
        assert top_level(app) == [ids["alpine"]]
        assert app.ref_tree.select_id(ids["pip"])
        await pilot.press("escape")
        await settle(pilot)
        assert len(top_level(app)) == 4
        assert app.ref_tree.cursor_id == ids["pip"]


async def test_commit_mutable(store):
    root, ids = store
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        app.ref_tree.select_id(ids["old"])
        await pilot.press("c")
        assert "already committed" in app.notes[-1][1]
        app.ref_tree.select_id(ids["gomod"])
        await pilot.press("c")
        await wait_for(pilot, lambda: ids["gomod"] not in app.ref_tree.nodes, what="commit")
        await settle(pilot)
        new = app.ref_tree.cursor_id
        assert new is not None and new != ids["gomod"]
        row = app.ref_tree.view.rows[new]
        assert not row.mutable and row.description == "go mod cache"
        assert (root / "snapshots" / new).is_dir()


async def test_hold_and_release(store):
    root, ids = store
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        app.ref_tree.select_id(ids["frontend"])
        await pilot.press("h")
        await wait_for(pilot, lambda: ids["frontend"] in app.ref_tree.view.pinned)
        await settle(pilot)
        row = app.ref_tree.view.rows[ids["frontend"]]
        assert row.in_use and "pinned" in state_words(row, True)
        await pilot.press("space")
        assert ids["frontend"] not in app.marks
        await pilot.press("u")
        await wait_for(pilot, lambda: not app.ref_tree.view.rows[ids["frontend"]].held)
        assert app.service.holds() == frozenset()


async def test_force_release_live_process_needs_two_confirmations(store):
    root, ids = store
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        app.ref_tree.select_id(ids["pip"])
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, ForceReleaseScreen))
        assert app.focused is not None and app.focused.id == "no"
        text = " ".join(str(s.render()) for s in app.screen.query(Static))
        assert "pid 4242 on ci-runner-7" in text
        await pilot.press("y")
        await pilot.pause()
        assert isinstance(app.screen, ForceReleaseScreen)  # alive: confirm twice
        assert "still running" in str(app.screen.query_one("#warning", Static).render())
        await pilot.press("y")
        await wait_for(pilot, lambda: not app.ref_tree.view.rows[ids["pip"]].held)
        with sqlite3.connect(root / "metadata.db") as db:
            holders = db.execute("SELECT * FROM holder WHERE record = ?", (ids["pip"],))
            assert holders.fetchall() == []


async def test_force_release_dead_process_once(store):
    import socket

    root, ids = store
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        # a holder left by a process that has exited (opening the store reaps such rows,
        # so it is written after the app opened)
        with sqlite3.connect(root / "metadata.db") as db:
            db.execute(
                "INSERT INTO holder (record, pid, start, host, created_at, counts_use) "
                "VALUES (?, 999999, 'gone', ?, 0, 1)",
                (ids["frontend"], socket.gethostname()),
            )
        app.reload()
        await settle(pilot)
        assert not app.ref_tree.view.rows[ids["frontend"]].held  # a dead holder does not count
        app.ref_tree.select_id(ids["frontend"])
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, ForceReleaseScreen))
        text = " ".join(str(s.render()) for s in app.screen.query(Static))
        assert "pid 999999" in text and "exited" in text
        await pilot.press("y")  # one confirmation is enough for an exited process
        await wait_for(pilot, lambda: not isinstance(app.screen, ForceReleaseScreen))
        await wait_for(
            pilot, lambda: any("dropped the hold of pid 999999" in n for _, n in app.notes)
        )
        app.ref_tree.select_id(ids["old"])
        await pilot.press("u")
        await wait_for(pilot, lambda: "nobody else holds" in app.notes[-1][1])


async def test_read_only_hides_and_refuses_actions(store):
    root, ids = store
    app = make_app(root, read_only=True)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        shown = {b.binding.key for b in app.active_bindings.values() if b.binding.show}
        for key in ("d", "p", "c", "h", "u"):
            assert key not in shown
        app.ref_tree.select_id(ids["old"])
        await pilot.press("space", "d", "c", "h", "u", "p")
        await settle(pilot)
        # every refused key says why
        refusals = [n for _, n in app.notes if n.startswith("read-only (--read-only)")]
        assert len(refusals) == 6, app.notes
        assert "read-only (--read-only): prune is off" in refusals
        assert app.marks == set()
        assert app.screen is app.screen_stack[0]
        assert (root / "snapshots" / ids["old"]).exists()
        assert app.service.read_only
        # the service refuses too
        assert app.ref_tree.view.rows[ids["gomod"]].mutable
        for call in (
            lambda: app.service.commit(ids["gomod"]),
            lambda: app.service.prune_ids([ids["old"]]),
            lambda: app.service.hold(ids["old"]),
        ):
            try:
                call()
            except Exception as err:
                assert "read-only" in str(err)
            else:
                raise AssertionError("a read-only service changed the store")


async def test_policy_prune_dry_run_then_progress(store):
    root, ids = store
    app = make_app(root)
    async with app.run_test(size=(130, 40)) as pilot:
        await loaded(pilot)
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, PolicyPruneScreen))
        screen = app.screen
        screen.query_one("#filters", Input).value = "type==regular"
        screen.query_one("#keep", Input).value = "7d"
        await pilot.pause()
        assert screen.query_one("#prune-button", Button).disabled
        screen.action_preview()
        await wait_for(pilot, lambda: screen.plan is not None, what="the dry run")
        assert screen.plan.ids == (ids["old"],)
        assert "730MB" in str(screen.query_one("#summary", Static).render())
        assert (root / "snapshots" / ids["old"]).exists()
        assert not screen.query_one("#prune-button", Button).disabled
        screen.action_prune()
        await wait_for(pilot, lambda: screen.finished, what="the prune")
        await settle(pilot)
        assert screen.done and screen.done[0].id == ids["old"]
        assert "freed 730MB" in str(screen.query_one("#summary", Static).render())
        assert not (root / "snapshots" / ids["old"]).exists()
        await pilot.press("escape")
        await wait_for(pilot, lambda: ids["old"] not in app.ref_tree.nodes)
        # a bad input is reported, not raised
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, PolicyPruneScreen))
        app.screen.query_one("#keep", Input).value = "soon"
        app.screen.action_preview()
        await pilot.pause()
        assert "keep" in str(app.screen.query_one("#summary", Static).render())


async def test_help_palette_pause_and_details_toggle(store):
    root, _ids = store
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, HelpScreen))
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, CommandPalette))
        await pilot.press("P")
        assert app.paused
        await pilot.press("P")
        assert not app.paused
        details = app.query_one("#details")
        await pilot.press("i")
        assert not details.display
        await pilot.press("i")
        assert details.display


async def test_errors_become_notifications(store, tmp_path: Path):
    root, ids = store
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        # another process prunes a record behind the app's back (live updates off)
        with CacheManager.open(root, clock=FixedClock()) as other:
            other.prune(
                __import__("cachetui.core", fromlist=["PruneOptions"]).PruneOptions(
                    all=True, filters=(f"id=={ids['gomod']}",)
                )
            )
        app.ref_tree.select_id(ids["gomod"])
        await pilot.press("c")
        await wait_for(pilot, lambda: any(s == "error" for s, _ in app.notes))
        assert "not found" in app.notes[-1][1]
        await pilot.press("h")
        await settle(pilot)
        assert app.is_running
    bad = tmp_path / "a-file"
    bad.write_text("not a store")
    app = make_app(bad)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, expect_error=True)
        assert app.load_error
        assert app.is_running


async def test_main_keys_are_off_while_a_dialog_is_open(store):
    root, ids = store
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        app.ref_tree.select_id(ids["frontend"])
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmPruneScreen))
        await pilot.press("d", "p", "s", "M", "question_mark")
        await settle(pilot)
        assert len(app.screen_stack) == 2
        assert app.ref_tree.sort == Sort("size")
        await pilot.press("n")
        await wait_for(pilot, lambda: len(app.screen_stack) == 1)


async def test_shift_space_expands_the_whole_branch(store):
    root, ids = store
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        app.ref_tree.select_id(ids["alpine"], expand=False)
        await pilot.press("shift+space")
        await settle(pilot)
        assert app.ref_tree.nodes[ids["apt"]].is_expanded
        assert ids["pip"] in app.ref_tree.nodes
        await pilot.press("shift+space")
        assert not app.ref_tree.nodes[ids["alpine"]].is_expanded


async def test_command_palette_runs_dashboard_commands(store):
    root, _ids = store
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"Prune by policy")
        await settle(pilot)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PolicyPruneScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: len(app.screen_stack) == 1)
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"Sort by last used")
        await settle(pilot)
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(app.screen_stack) == 1)
        await settle(pilot)
        header = str(app.query_one("#columns", Static).render())
        assert "LAST USED ▼" in header


async def test_policy_prune_can_be_cancelled_between_batches(tmp_path: Path):
    """Escape while a prune runs stops it between batches; the store stays whole."""
    root = tmp_path / "store"
    with CacheManager.open(root, clock=FixedClock()) as cm:
        for index in range(120):
            ref = cm.new(retain=True, description=f"leaf {index}")
            (ref.mount().upper / "f").write_bytes(b"x" * 100)
            ref.release()
    app = make_app(root)
    async with app.run_test(size=(130, 40)) as pilot:
        await loaded(pilot)
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, PolicyPruneScreen))
        screen = app.screen
        screen.action_preview()
        await wait_for(pilot, lambda: screen.plan is not None, what="the dry run")
        assert len(screen.plan.ids) == 120
        advance = screen._advance
        shown = threading.Event()

        def advance_then_cancel(row):
            advance(row)
            if len(screen.done) == 1:
                screen.action_close()  # what escape does while the prune runs
                shown.set()

        screen._advance = advance_then_cancel
        prune_policy = app.service.prune_policy

        def prune_waiting_for_the_screen(options, on_prune):
            # The worker does not wait for the screen (progress is a message): hold it
            # after the first record until the screen has shown it and escape was pressed.
            def report(row):
                on_prune(row)
                if not shown.is_set():
                    assert shown.wait(30)

            return prune_policy(options, on_prune=report)

        app.service.prune_policy = prune_waiting_for_the_screen
        screen.action_prune()
        await wait_for(pilot, lambda: screen.finished, what="the cancelled prune")
        summary = str(screen.query_one("#summary", Static).render())
        went = len(screen.done)
        assert "cancelled" in summary and f"removed {went} records" in summary
    with CacheManager.open(root) as cm:
        left = {row.id for row in cm.disk_usage()}
        # Stopped early; the batches already under way finished and were counted.
        assert 0 < len(left) < 120 and went == 120 - len(left)
        assert [f for f in cm.doctor() if not f.fixed] == []
        for record_id in left:
            assert (cm.snapshots.path(record_id) / "f").read_bytes() == b"x" * 100


async def test_damaged_metadata_is_said_on_screen(store):
    """An emptied metadata.db shows no row while every layer is on disk: the totals line
    and a notification say the metadata is damaged, so the screen never looks like an
    empty store."""
    root, _ids = store
    layers = sorted(p.name for p in (root / "snapshots").iterdir())
    assert layers
    (root / "metadata.db").write_bytes(b"")
    for suffix in ("-wal", "-shm"):
        Path(f"{root / 'metadata.db'}{suffix}").unlink(missing_ok=True)
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        assert not top_level(app)
        assert app.damage is not None and "is damaged" in app.damage
        assert any(sev == "error" and "is damaged" in note for sev, note in app.notes)
        totals = app.query_one("#totals", Static)
        assert "METADATA DAMAGED" in str(totals.render())
    assert sorted(p.name for p in (root / "snapshots").iterdir()) == layers
