"""The Textual dashboard: ``CacheTuiApp`` and ``run_dashboard``.

The App owns the lifecycle: it builds the service (a store's or a fleet's), starts the
first read before Textual does (``preload``), shows ``MainScreen`` and closes the service
at the end. What the screen shows, and how, is ``cachetui.screens.main``'s; the write
flows are ``cachetui.screens.actions``'; live updates are ``cachetui.screens.live``'s.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from cachetui.core import DiskStat, paused_gc
from cachetui.screens.main import MainScreen
from cachetui.service import CacheService
from cachetui.views import DetailsView, StoreView

if TYPE_CHECKING:
    from cachetui.fleet_service import FleetService
    from cachetui.widgets.ref_tree import RefTree

__all__ = ["CacheTuiApp", "run_dashboard"]


class CacheTuiApp(App[int]):
    """The cachetui dashboard over one store (or a fleet)."""

    CSS_PATH = "app.tcss"
    TITLE = "cachetui"

    # The main screen lists its keys (q among them); q quits from its dialogs too.
    BINDINGS: ClassVar[list[BindingType]] = [Binding("q", "quit", "Quit", show=False)]

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        read_only: bool = False,
        clock: Callable[[], float] | None = None,
        live: bool = True,
        disk_stat: Callable[[Path], DiskStat] | None = None,
        service: CacheService | FleetService | None = None,
        preload: bool = False,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        # What the header names: the store's directory, or a fleet's (masked) URL.
        self.place = str(service.root) if service is not None else str(root)
        self.clock = clock or time.time
        self.live = live
        self.service = service or CacheService(
            self.root, read_only=read_only, clock=self.clock, disk_stat_fn=disk_stat
        )
        self.notes: list[tuple[str, str]] = []
        # The first read, handed to the main screen (which lets it go once shown: the
        # first picture is not kept after a newer one replaced it).
        preloaded: Future[StoreView] | None = None
        self._preload: threading.Thread | None = None
        self._frozen = False  # the first picture was put out of the collector's reach
        if preload:  # read the store while Textual starts (the first paint comes sooner)
            preloaded = Future()
            self._preload = threading.Thread(
                target=self._preload_run, args=(preloaded,), name="cachetui-preload", daemon=True
            )
            self._preload.start()
        self.main = MainScreen(
            self.service, place=self.place, read_only=read_only, live=live, preload=preloaded
        )

    def get_default_screen(self) -> Screen[Any]:
        return self.main

    def _preload_run(self, preloaded: Future[StoreView]) -> None:
        try:
            # The first picture of a big store is hundreds of thousands of objects that
            # live as long as it is shown. Left to the cyclic collector, they would be
            # traversed by its first collections, on the UI thread, while the first
            # frame is drawn (0.3 s at 100,000 records). They hold no cycles: they are
            # put out of its reach (``gc.freeze``) before it runs again, and are still
            # freed by reference counting when a later picture replaces them.
            with paused_gc():
                view = self.service.load()
                gc.freeze()
                self._frozen = True
            preloaded.set_result(view)
        except BaseException as err:
            preloaded.set_exception(err)

    def on_unmount(self) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        """Stop the feed, release the dashboard's holds and close the store (idempotent).

        A preload still running is waited for first, so no thread keeps using the store.
        """
        preload, self._preload = self._preload, None
        if preload is not None:
            preload.join(timeout=30)
        self.service.close()
        if self._frozen:  # the collector looks at those objects again (the test
            self._frozen = False  # suite runs many dashboards in one process)
            gc.unfreeze()

    def notify(self, message: str, *args: Any, **kwargs: Any) -> None:
        """Show a toast, and keep it in ``notes`` (tests and the log read them)."""
        self.notes.append((str(kwargs.get("severity", "information")), str(message)))
        super().notify(message, *args, **kwargs)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield from self.main.system_commands()

    # -- the main screen's state, for run_dashboard, tests and benchmarks --------------------

    @property
    def read_only(self) -> bool:
        return self.main.read_only

    @property
    def ref_tree(self) -> RefTree:
        return self.main.ref_tree

    @property
    def marks(self) -> set[str]:
        """The marked record ids (the tree owns them)."""
        return self.main.ref_tree.marks

    @property
    def details(self) -> DetailsView | None:
        return self.main.details

    @property
    def loaded(self) -> bool:
        return self.main.loaded

    @property
    def load_error(self) -> str | None:
        return self.main.load_error

    @property
    def damage(self) -> str | None:
        return self.main.damage

    @property
    def paused(self) -> bool:
        return self.main.paused

    @property
    def feed_error(self) -> str | None:
        return self.main.feed_error

    @property
    def refreshes(self) -> int:
        return self.main.refreshes

    def reload(self, *, own: bool = True) -> None:
        """Re-read the store; ``own``: after our own action, shown even while paused."""
        self.main.reload(own=own)


def run_dashboard(
    root: Path,
    *,
    read_only: bool = False,
    simulator: bool = False,
    fleet_url: str | None = None,
) -> int:
    """Open the dashboard on ``root`` (or on the fleet at ``fleet_url``); with
    ``simulator``, run the demo build beside it."""
    if fleet_url is not None:
        from cachetui.fleet_service import FleetService

        fleet = FleetService(fleet_url, read_only=read_only)
        fleet_app = CacheTuiApp(fleet.root, read_only=read_only, service=fleet, preload=True)
        try:
            result = fleet_app.run()
            return 1 if fleet_app.load_error else int(result or 0)
        finally:
            fleet_app.shutdown()
    process = None
    if simulator:
        from cachetui.demo import start_simulator

        process = start_simulator(root)
    app: CacheTuiApp | None = None
    try:
        app = CacheTuiApp(root, read_only=read_only, preload=True)
        result = app.run()
        if app.load_error:
            return 1
        return int(result or 0)
    finally:
        if app is not None:
            app.shutdown()
        if process is not None:
            from cachetui.demo import stop_simulator

            stop_simulator(process)
