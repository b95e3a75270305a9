"""The fleet dashboard: the same App over ``FleetService``, on a real PostgreSQL.

The replica is seeded straight into a fresh fleet database (``dashboard_fixture``); where a
test needs an agent's answer it takes the request from the real queue and answers it as
an agent does. Nothing is polled by the dashboard: every change on screen here came
through LISTEN/NOTIFY.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cachetui.app import CacheTuiApp
from cachetui.fleet.requests import finish, take
from cachetui.fleet_service import FleetService, parse_store_filter
from cachetui.widgets.format import size
from tests.fleet.dashboard_fixture import database, heartbeat, publish_size, seed
from tests.ui.conftest import loaded, settle, wait_for
from tests.ui.store_fixture import FixedClock

pytestmark = pytest.mark.anyio

TITLE = "postgresql://fleet.example/cachetui"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_COLOR", "TEXTUAL_THEME", "TEXTUAL_ANIMATIONS", "TEXTUAL_COLOR_SYSTEM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TZ", "UTC")


@pytest.fixture
def fleet(fleet_url: str) -> Iterator[tuple[str, dict[str, list[str]]]]:
    yield fleet_url, seed(fleet_url)


def fleet_app(
    url: str, *, live: bool = False, read_only: bool = False, request_wait: float = 60.0
) -> CacheTuiApp:
    clock = FixedClock()
    service = FleetService(
        url, clock=clock, title=TITLE, read_only=read_only, request_wait=request_wait
    )
    app = CacheTuiApp(Path("fleet"), clock=clock, live=live, service=service, read_only=read_only)
    app.animation_level = "none"
    return app


async def expand(pilot, app: CacheTuiApp, name: str) -> None:
    key = f"{name}/"
    app.ref_tree.select_id(key)
    await pilot.press("right")
    await wait_for(pilot, lambda: any(k.startswith(key) and k != key for k in app.ref_tree.nodes),
                   what=f"{name}'s records")  # fmt: skip
    await settle(pilot)


def test_parse_store_filter() -> None:
    assert parse_store_filter("store==ci-1") == ([("==", "ci-1")], "")
    assert parse_store_filter("store!=a, type==regular") == ([("!=", "a")], "type==regular")
    assert parse_store_filter("mutable") == ([], "mutable")


# -- snapshots -----------------------------------------------------------------------------


def test_stores_collapsed(snap_compare, fleet) -> None:
    url, _ids = fleet

    async def run_before(pilot):
        app = await loaded(pilot)
        assert len(app.service.view.stores) == 3
        assert not any("/" in k and not k.endswith("/") for k in app.ref_tree.nodes)

    assert snap_compare(fleet_app(url), terminal_size=(130, 30), run_before=run_before)


def test_one_store_expanded(snap_compare, fleet) -> None:
    url, ids = fleet

    async def run_before(pilot):
        app = await loaded(pilot)
        await expand(pilot, app, "ci-runner-1")
        app.ref_tree.select_id(f"ci-runner-1/{ids['ci-runner-1'][1]}")
        await settle(pilot)
        await wait_for(pilot, lambda: app.details is not None
                       and app.details.record.id.endswith(ids["ci-runner-1"][1]))  # fmt: skip

    assert snap_compare(fleet_app(url), terminal_size=(130, 34), run_before=run_before)


def test_offline_host(snap_compare, fleet) -> None:
    url, _ids = fleet

    async def run_before(pilot):
        app = await loaded(pilot)
        app.ref_tree.select_id("ci-runner-3/")
        await settle(pilot)
        store = app.service.view.stores["ci-runner-3/"]
        assert not store.online and store.status == "offline for 25m"

    assert snap_compare(fleet_app(url), terminal_size=(130, 30), run_before=run_before)


async def _send_prune(pilot, app: CacheTuiApp, key: str) -> None:
    await expand(pilot, app, key.partition("/")[0])
    assert app.ref_tree.select_id(key)
    await pilot.press("space", "d")
    await wait_for(pilot, lambda: len(app.screen_stack) > 1, what="the confirmation")
    await pilot.press("y")
    # (not settle(): the prune's worker waits for the agent's answer until it comes)
    await wait_for(pilot, lambda: "requested" in str(app.ref_tree.label_for(key)),
                   what="the row to show the pending request")  # fmt: skip
    await pilot.pause()


def test_pending_request(snap_compare, fleet) -> None:
    url, ids = fleet
    key = f"ci-runner-1/{ids['ci-runner-1'][1]}"

    async def run_before(pilot):
        app = await loaded(pilot)
        await _send_prune(pilot, app, key)
        with database(url) as db:
            state = db.execute_sql("SELECT state, store, kind FROM fleet_request").fetchall()
        assert state == [("pending", "ci-runner-1", "prune_ids")]

    # Nobody answers: the dashboard gives up later (after the picture), then exits.
    app = fleet_app(url, live=True, request_wait=10.0)
    assert snap_compare(app, terminal_size=(130, 30), run_before=run_before)


def test_refused_action(snap_compare, fleet) -> None:
    url, ids = fleet
    target = ids["ci-runner-1"][1]
    key = f"ci-runner-1/{target}"

    async def run_before(pilot):
        app = await loaded(pilot)
        await _send_prune(pilot, app, key)
        with database(url) as db:
            taken = take(db, "ci-runner-1")
            assert taken is not None
            finish(db, "ci-runner-1", taken.id, result={
                "dry_run": False, "removed": [], "freed": 0, "gone": [],
                "refused": [[target, "used since you confirmed"]]})  # fmt: skip
        await wait_for(pilot, lambda: any("used since" in t for _s, t in app.notes))
        await wait_for(pilot, lambda: "requested" not in str(app.ref_tree.label_for(key)),
                       what="the pending mark gone")  # fmt: skip
        await settle(pilot)

    assert snap_compare(fleet_app(url, live=True), terminal_size=(130, 30), run_before=run_before)


def test_fleet_view_stale(snap_compare, fleet, pg) -> None:
    url, _ids = fleet

    async def run_before(pilot):
        app = await loaded(pilot)
        await settle(pilot)
        pg.stop()
        await wait_for(pilot, lambda: app.feed_error and "stale since" in app.feed_error,
                       timeout=30, what="stale")  # fmt: skip
        await wait_for(pilot, lambda: app.service.view.stale_since is not None)
        await settle(pilot)

    try:
        assert snap_compare(
            fleet_app(url, live=True), terminal_size=(130, 30), run_before=run_before
        )
    finally:
        pg.start()


# -- pilot: actions become requests --------------------------------------------------------


async def test_actions_on_an_offline_host_are_refused_naming_it(fleet) -> None:
    url, ids = fleet
    app = fleet_app(url)
    async with app.run_test(size=(130, 34)) as pilot:
        await loaded(pilot)
        await expand(pilot, app, "ci-runner-3")
        key = f"ci-runner-3/{ids['ci-runner-3'][1]}"
        assert app.ref_tree.select_id(key)
        await pilot.press("d")
        await settle(pilot)
        assert any("ci-runner-3" in text and "offline" in text for _s, text in app.notes), app.notes
        assert len(app.screen_stack) == 1  # no confirmation for a host that cannot act
    with database(url) as db:
        assert db.execute_sql("SELECT count(*) FROM fleet_request").fetchone()[0] == 0


async def test_prune_is_a_request_pending_then_refused_by_the_agent(fleet) -> None:
    url, ids = fleet
    target = ids["ci-runner-1"][1]
    key = f"ci-runner-1/{target}"
    app = fleet_app(url, live=True)
    async with app.run_test(size=(130, 34)) as pilot:
        await loaded(pilot)
        await expand(pilot, app, "ci-runner-1")
        assert app.ref_tree.select_id(key)
        await pilot.press("space", "d")
        await wait_for(pilot, lambda: len(app.screen_stack) > 1, what="the confirmation")
        title = str(app.screen.query_one(".title").render())
        assert "on host ci-runner-1" in title, title
        assert app.screen.focused is not None and "no" in (app.screen.focused.id or "")
        await pilot.press("y")
        # The request is queued; the row says so until the agent answers.
        await wait_for(pilot, lambda: "requested" in str(app.ref_tree.label_for(key)),
                       what="pending")  # fmt: skip
        with database(url) as db:
            taken = take(db, "ci-runner-1")
            assert taken is not None and taken.kind == "prune_ids"
            assert taken.payload["ids"] == [target]
            assert target in taken.payload["confirmed"]
            finish(db, "ci-runner-1", taken.id, result={
                "dry_run": False, "removed": [], "freed": 0, "gone": [],
                "refused": [[target, "used since you confirmed"]]})  # fmt: skip
        await wait_for(pilot, lambda: any("used since you confirmed" in t for _s, t in app.notes),
                       what="the refusal")  # fmt: skip
        await wait_for(pilot, lambda: not app.service.view.pending, what="pending cleared")


async def test_a_change_on_a_host_shows_without_a_key_press(fleet) -> None:
    url, ids = fleet
    target = ids["ci-runner-2"][3]
    key = f"ci-runner-2/{target}"
    app = fleet_app(url, live=True)
    async with app.run_test(size=(130, 34)) as pilot:
        await loaded(pilot)
        await expand(pilot, app, "ci-runner-2")
        publish_size(url, "ci-runner-2", target, 777_000_000)
        await wait_for(pilot, lambda: app.service.view.rows[key].size == 777_000_000,
                       what="the new size")  # fmt: skip
        await settle(pilot)
        assert size(777_000_000) in str(app.ref_tree.label_for(key))


async def test_a_host_going_offline_and_back_shows_by_itself(fleet) -> None:
    url, _ids = fleet
    app = fleet_app(url, live=True)
    app.service.offline_after = 2.0  # the limit, shortened for the test
    async with app.run_test(size=(130, 34)) as pilot:
        await loaded(pilot)
        view = lambda: app.service.view  # noqa: E731
        heartbeat(url, "ci-runner-1", 0.0)
        await wait_for(pilot, lambda: view().stores["ci-runner-1/"].online, what="online")
        # no heartbeat for longer than the limit: offline, with no query from the screen
        await wait_for(pilot, lambda: not view().stores["ci-runner-1/"].online, what="offline")
        heartbeat(url, "ci-runner-1", 0.0)
        await wait_for(pilot, lambda: view().stores["ci-runner-1/"].online, what="back online")


async def test_server_gone_is_stale_and_recovers_by_itself(fleet, pg) -> None:
    url, ids = fleet
    app = fleet_app(url, live=True)
    async with app.run_test(size=(130, 34)) as pilot:
        await loaded(pilot)
        await settle(pilot)
        pg.stop()
        await wait_for(pilot, lambda: app.feed_error and "fleet view stale since" in app.feed_error,
                       timeout=30, what="stale")  # fmt: skip
        pg.start()
        await wait_for(pilot, lambda: app.feed_error is None, timeout=30, what="recovered")
        target = ids["ci-runner-1"][0]
        await expand(pilot, app, "ci-runner-1")
        # The first change after the restart shows: the reader's connections that the
        # restart broke are replaced on their first read, and nothing is retried here.
        publish_size(url, "ci-runner-1", target, 999_000_000)
        await wait_for(pilot, lambda: app.service.view.rows[f"ci-runner-1/{target}"].size
                       == 999_000_000, what="live again")  # fmt: skip
        failed = [n.message for n in app._notifications
                  if "fleet database" in n.message and "stale" not in n.message]  # fmt: skip
        assert not failed, "no read failed after the restart"


async def test_store_filter_and_sort(fleet) -> None:
    url, _ids = fleet
    app = fleet_app(url)
    async with app.run_test(size=(130, 34)) as pilot:
        await loaded(pilot)
        tree = app.ref_tree
        top = lambda: [n.data for n in tree.root.children]  # noqa: E731
        stores = app.service.view.stores
        assert top() == sorted(stores, key=lambda k: -stores[k].reclaimable)
        await pilot.press("M")  # by free space, least free first
        await settle(pilot)
        assert top() == sorted(stores, key=lambda k: stores[k].free_fraction)
        await pilot.press("n")  # by name
        await settle(pilot)
        assert top() == sorted(stores)
        await pilot.press("slash", *"store==ci-runner-2", "enter")
        await wait_for(pilot, lambda: top() == ["ci-runner-2/"], what="the filter")


def test_a_row_update_rebuilds_only_its_own_store(fleet) -> None:
    """A change on one host is read and rebuilt for that host alone: the other stores'
    rows are the same objects in the new view (not copied), the delta names the changed
    record, and the view before the change still shows what it showed."""
    from cachetui.core import ChangeSet
    from cachetui.fleet_views import FleetRows

    url, ids = fleet
    service = FleetService(url)
    try:
        service.load()
        for key in list(service.view.stores):
            service.expand(key)
        before = service.view
        target = f"ci-runner-1/{ids['ci-runner-1'][0]}"
        publish_size(url, "ci-runner-1", split(target), 123_456_789)
        reads: list[str] = []
        holders = service.reader.holders
        service.reader.holders = lambda name: reads.append(name) or holders(name)  # type: ignore[method-assign]
        # a size written: the notification says the holders did not change
        delta = service.apply(ChangeSet(frozenset({"records:ci-runner-1"}), False))
        assert reads == [], "holders are read only when they changed"
        after = delta.view
        assert all(after.rows[k].holders == before.rows[k].holders for k in before.rows)
        assert isinstance(before.rows, FleetRows) and isinstance(after.rows, FleetRows)
        assert [k for k in delta.changed if not k.endswith("/")] == [target]
        assert not (delta.added or delta.removed or delta.reparented)
        assert after.rows[target].size == 123_456_789
        assert before.rows[target].size != 123_456_789  # the older view did not move
        for name in after.rows.records:
            if name != "ci-runner-1":
                assert after.rows.records[name] is before.rows.records[name]
        assert after.children.get("ci-runner-1/") == before.children.get("ci-runner-1/")
        assert len(after.rows) == len(before.rows) == len(list(after.rows))
    finally:
        service.close()


def split(key: str) -> str:
    return key.partition("/")[2]


def test_filters_match_the_packed_records_of_the_stores_read(fleet) -> None:
    """Words search the records read so far (their ids and descriptions); a filter
    expression reads the stores it needs and matches each record's value; ``store==``
    picks a store's row and its records."""
    url, ids = fleet
    service = FleetService(url)
    try:
        service.load()
        assert service.matching("apt-get") == frozenset()  # nothing read yet
        service.expand("ci-runner-1/")
        assert service.matching("apt-get") == {f"ci-runner-1/{ids['ci-runner-1'][1]}"}
        assert service.matching(ids["ci-runner-1"][2][-6:]) == {
            f"ci-runner-1/{ids['ci-runner-1'][2]}"
        }
        mounts = service.matching("type==exec.cachemount")  # reads every store
        assert mounts == {f"{name}/{ids[name][3]}" for name in ids}
        assert service.matching("store==ci-runner-2,mutable") == {
            f"ci-runner-2/{ids['ci-runner-2'][3]}"
        }
        assert service.matching("store==ci-runner-1") == {
            "ci-runner-1/",
            *(f"ci-runner-1/{i}" for i in ids["ci-runner-1"]),
        }
    finally:
        service.close()


def test_details_subtree_totals_are_the_rows_own(fleet) -> None:
    """The details pane's subtree is what the row's columns show: a record and
    everything below it; a store's row, its agent's totals (read or not)."""
    from tests.fleet.dashboard_fixture import records_of

    url, ids = fleet
    service = FleetService(url)
    try:
        view = service.load()
        row = view.stores["ci-runner-1/"]
        store = service.details("ci-runner-1/")
        assert (store.subtree_size, store.subtree_count) == (row.total, row.records)
        service.expand("ci-runner-1/")
        sizes = [r["size"] for r in records_of(0)]
        assert (row.total, row.records) == (sum(sizes), 4)
        base = service.details(f"ci-runner-1/{ids['ci-runner-1'][0]}")
        assert (base.subtree_size, base.subtree_count) == (sum(sizes[:3]), 3)
        leaf = service.details(f"ci-runner-1/{ids['ci-runner-1'][1]}")
        assert (leaf.subtree_size, leaf.subtree_count) == (sizes[1], 1)
    finally:
        service.close()
