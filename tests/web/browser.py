"""Drive ``cachetui serve`` from a real browser: Debian's Chromium through Playwright.

The browser is never downloaded: Playwright launches ``/usr/bin/chromium`` (the project's
CI installs the Debian package). Under ``CI=true`` a missing browser fails the test; on a
developer machine without it the test is skipped with the reason.

The page draws the terminal on a canvas, so its text is read from the terminal's own
buffer: the served ``textual.js`` is handed to the page with one statement added that
names the terminal object (``window.cachetuiTerminal``); nothing else in the page changes.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Where textual.js builds its terminal object; the test names it so it can read the screen.
_TERMINAL_MADE = "const t=new w(e,{ping:r});"


def need_browser() -> Any:
    """Playwright's sync API, or skip (fail under CI) saying what is missing."""
    missing = None
    try:
        from playwright import sync_api
    except ImportError:
        missing = "the playwright package is not installed (pip install -e '.[test]')"
    if missing is None and not CHROMIUM.exists():
        missing = f"{CHROMIUM} is missing (apt-get install chromium)"
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run: {missing}")
        pytest.skip(f"browser tests need Debian's Chromium: {missing}")
    return sync_api


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def served(root: Path, *args: str, log: Path) -> Iterator[str]:
    """Run ``cachetui serve --root ROOT ARGS`` on a free port; yields the page's URL."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for _attempt in range(3):
        port = free_port()
        command = [sys.executable, "-m", "cachetui", "serve", "--root", str(root)]
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [*command, "--port", str(port), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + 30
        while proc.poll() is None and "serving the dashboard" not in log.read_text():
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"cachetui serve did not start:\n{log.read_text()}")
            time.sleep(0.05)
        if proc.poll() is None and _accepts(port, deadline):
            break
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            raise AssertionError(f"cachetui serve never listened on {port}:\n{log.read_text()}")
        if "address already in use" not in log.read_text().lower():
            raise AssertionError(f"cachetui serve exited {proc.returncode}:\n{log.read_text()}")
    else:
        raise AssertionError("no free port for cachetui serve")
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # Stopping the server ends every dashboard it started (none keeps the store open).
    deadline = time.monotonic() + 15
    while (left := dashboards_on(root)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"dashboards left running after the server stopped: {left}"


def _accepts(port: int, deadline: float) -> bool:
    """The port takes connections (the startup message comes just before it listens)."""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def dashboards_on(root: Path) -> list[int]:
    """Pids of dashboard processes (``-m cachetui --root ROOT``) on this machine."""
    wanted = ["-m", "cachetui", "--root", str(root)]
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(argv[i : i + 4] == wanted for i in range(len(argv))):
            pids.append(int(entry.name))
    return pids


class DashboardPage:
    """One browser tab on a served dashboard, read through the terminal's buffer."""

    def __init__(self, page: Any) -> None:
        self.page = page

    @classmethod
    def open(cls, context: Any, url: str, size: tuple[int, int] = (1200, 700)) -> DashboardPage:
        page = context.new_page()
        page.set_viewport_size({"width": size[0], "height": size[1]})

        def name_terminal(route: Any) -> None:
            response = route.fetch()
            body = response.text()
            assert _TERMINAL_MADE in body, "textual.js changed: update tests/web/browser.py"
            body = body.replace(_TERMINAL_MADE, _TERMINAL_MADE + "window.cachetuiTerminal=t;")
            route.fulfill(response=response, body=body)

        page.route("**/static/js/textual.js", name_terminal)
        # The page asks for a web font; tests never leave this machine.
        page.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/]).*"), lambda route: route.abort())
        page.goto(url)
        page.wait_for_function("window.cachetuiTerminal !== undefined")
        return cls(page)

    def lines(self) -> list[str]:
        """The terminal's screen, one string per row."""
        return list(
            self.page.evaluate(
                """() => {
                    const buffer = window.cachetuiTerminal.terminal.buffer.active;
                    const rows = [];
                    for (let i = 0; i < buffer.length; i++) {
                        rows.push(buffer.getLine(i).translateToString(true));
                    }
                    return rows;
                }"""
            )
        )

    def text(self) -> str:
        return "\n".join(self.lines())

    def wait_for(
        self, predicate: Callable[[list[str]], object], what: str, timeout: float = 30.0
    ) -> list[str]:
        """Poll the screen until ``predicate(lines)`` is true; fail showing the screen."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines()
            if predicate(lines):
                return lines
            if time.monotonic() > deadline:
                screen = "\n".join(lines)
                raise AssertionError(f"timed out waiting for {what}; the page shows:\n{screen}")
            self.page.wait_for_timeout(100)

    def press(self, key: str) -> None:
        self.page.locator(".textual-terminal").click()
        self.page.keyboard.press(key)

    def row(self, lines: list[str], record_id: str) -> str | None:
        """The tree row that shows ``record_id`` (the details pane excluded). The ID
        column may show only the id's start (the other columns take the width)."""
        shown = record_id[:12]
        for line in lines:
            if shown in line and not line.lstrip().startswith("ID "):
                return line
        return None


@contextmanager
def chromium(sync_api: Any) -> Iterator[Any]:
    """Debian's Chromium, headless, with a fresh profile; yields its browser context."""
    import tempfile

    with (
        tempfile.TemporaryDirectory(prefix="cachetui-chromium-") as profile,
        sync_api.sync_playwright() as playwright,
    ):
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield context
        finally:
            context.close()
