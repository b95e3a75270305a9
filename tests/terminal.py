"""A real terminal for tests: a shell inside tmux, typing the ``cachetui`` command.

Pilot feeds Textual key events; a terminal sends bytes, and some keys arrive differently
(most terminals send a plain space for shift+space). These tests type into tmux and read
its screen back as text. Each terminal is a private tmux server on its own socket.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

__all__ = ["Terminal", "cachetui_command", "needs_tmux"]


def needs_tmux() -> None:
    if shutil.which("tmux") is None and os.environ.get("CI") != "true":
        pytest.skip("needs tmux")


def cachetui_command() -> list[str]:
    """The installed ``cachetui`` console script of this Python (not a shell shim that
    another user could not run), or ``python -m cachetui`` when there is none."""
    script = Path(sys.executable).parent / "cachetui"
    if script.is_file():
        return [str(script)]
    return [os.path.realpath(sys.executable), "-m", "cachetui"]


class Terminal:
    """One tmux server with one shell of ``width`` x ``height`` cells."""

    def __init__(self, tmp_path: Path, *, width: int = 130, height: int = 36) -> None:
        name = f"cachetui-test-{uuid.uuid4().hex[:10]}"  # unique: several test runs share the host
        self.socket = name
        self.session = name
        env = {**os.environ, "PS1": "$ ", "TERM": "xterm-256color", "TMPDIR": str(tmp_path)}
        subprocess.run(
            [
                "tmux",
                "-L",
                self.socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                self.session,
                "-x",
                str(width),
                "-y",
                str(height),
                "bash --norc --noprofile",
            ],
            check=True,
            env=env,
            timeout=30,
        )

    def _tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout

    def run(self, command: Sequence[str]) -> None:
        """Type a command line (quoted as given) and Enter; ``EXIT=<code>`` follows it."""
        line = " ".join(shlex.quote(part) for part in command)
        self._tmux("send-keys", "-t", self.session, "-l", f"{line}; echo EXIT=$?")
        self._tmux("send-keys", "-t", self.session, "Enter")

    def type(self, line: str) -> None:
        """Type a shell line exactly as written (pipes, ``;``), then Enter."""
        self._tmux("send-keys", "-t", self.session, "-l", line)
        self._tmux("send-keys", "-t", self.session, "Enter")

    def keys(self, *keys: str) -> None:
        """Press keys by tmux's names (``j``, ``Space``, ``Enter``): their bytes go in."""
        self._tmux("send-keys", "-t", self.session, *keys)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", self.session)

    def history(self) -> str:
        """The screen and what scrolled off it, with wrapped lines joined."""
        return self._tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", self.session)

    def wait_for(self, predicate: Callable[[str], object], what: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if predicate(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{text}")
            time.sleep(0.1)

    def exit_code(self, timeout: float = 60) -> int:
        found: list[int] = []

        def ended(text: str) -> bool:
            found[:] = [int(m) for m in re.findall(r"^EXIT=(\d+)\s*$", text, re.MULTILINE)]
            return bool(found)

        self.wait_for(ended, "the command to exit", timeout)
        return found[-1]

    def close(self) -> None:
        try:
            socket = self._tmux("display-message", "-p", "#{socket_path}").strip()
        except subprocess.CalledProcessError:
            socket = ""  # the server is gone already
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], timeout=30, check=False)
        if socket:  # a killed server leaves its socket file behind
            Path(socket).unlink(missing_ok=True)
