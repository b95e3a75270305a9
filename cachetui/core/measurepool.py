"""Helper processes that measure parts of a large tree, started without ``fork()``.

:func:`cachetui.core.usage.measure` shares a large tree's directories with other
processes (a walk is Python work under the GIL per entry, so threads do not help). This
module owns those processes. They are started with ``subprocess`` (which execs a fresh
interpreter at once), never with ``os.fork()``: forking a process whose other threads
may hold a lock (the dashboard's, the file watcher's, SQLite's) can deadlock the child,
and Python 3.12 warns about it. A helper is started on first need, in the background:
the caller keeps walking alone until it is ready, then hands it work; it then serves one
request at a time for the life of the calling process, and leaves when the socket to it
closes (its parent exited or dropped it).

A request is one ``sendmsg``: the directory fds to walk from (``SCM_RIGHTS``, so the
helper walks the very directories the caller opened, safe against a renamed path) and
a pipe of task numbers shared by every process on the walk; the reply is the helper's
pickled counts.
"""

from __future__ import annotations

import atexit
import os
import pickle
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "Helper",
    "HelperError",
    "available",
    "borrow",
    "give_back",
    "process_state",
    "requests",
    "serve",
    "started",
]

_LENGTH = struct.Struct("=Q")
_READY = b"R"
#: The kernel takes at most 253 fds in one SCM_RIGHTS message.
MAX_FDS = 250
#: How long a request waits for a running helper's reply before calling it failed
#: (seconds): a walk of a million entries takes a few seconds on a busy machine.
REPLY_TIMEOUT = 600.0
#: How often a request waiting for a reply looks whether its helper still runs (seconds):
#: one stopped (SIGSTOP, a debugger) or gone fails the request at once, and the caller
#: measures in-process instead of waiting out ``REPLY_TIMEOUT``.
CHECK_INTERVAL = 0.2
#: The directory holding the ``cachetui`` package this process runs, so a helper imports
#: the same code (not another installed copy).
_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent.parent)


class HelperError(OSError):
    """A helper died, or broke the protocol, in the middle of a request."""


class Helper:
    """One helper process and the socket to it."""

    __slots__ = ("busy", "proc", "ready", "sock")

    def __init__(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            code = (
                "import sys; sys.path.insert(0, sys.argv[1]); "
                "from cachetui.core.usage import serve_helper; serve_helper(int(sys.argv[2]))"
            )
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code, _PACKAGE_PARENT, str(child.fileno())],
                pass_fds=(child.fileno(),),
                # A helper never writes to the caller's terminal: a failure shows as a
                # failed request, and the tree is measured again without it.
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                close_fds=True,
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        self.sock = parent
        self.ready = False
        self.busy = False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def trouble(self) -> str | None:
        """Why this helper cannot answer (exited, or stopped), or None while it runs."""
        code = self.proc.poll()
        if code is not None:
            return f"exited with status {code}"
        state = process_state(self.proc.pid)
        if state in ("T", "t"):
            return f"is stopped (process {self.proc.pid} in state {state})"
        if state in ("Z", "X"):
            return f"exited (process {self.proc.pid} in state {state})"
        return None

    def check_ready(self) -> bool:
        """True once the helper has said it is ready (never blocks)."""
        if self.ready:
            return True
        readable, _, _ = select.select([self.sock], [], [], 0)
        if not readable:
            return False
        if self.sock.recv(1) != _READY:
            raise HelperError("a measuring helper did not start")
        self.ready = True
        return True

    def request(self, header: bytes, fds: Sequence[int]) -> None:
        """Send a request: ``header`` and the fds, which the helper receives as its own."""
        global _requests
        socket.send_fds(self.sock, [_LENGTH.pack(len(header))], list(fds))
        self.sock.sendall(header)
        _requests += 1

    def reply(self) -> bytes:
        """The helper's answer to the last request; ``HelperError`` as soon as the helper
        is seen stopped or gone, or after ``REPLY_TIMEOUT`` without an answer."""
        deadline = time.monotonic() + REPLY_TIMEOUT
        self.sock.settimeout(CHECK_INTERVAL)
        try:
            (length,) = _LENGTH.unpack(self._receive(_LENGTH.size, deadline))
            return self._receive(length, deadline)
        except HelperError:
            raise  # already says what went wrong (it is an OSError: not wrapped again)
        except (OSError, struct.error) as err:
            raise HelperError(f"a measuring helper failed: {err}") from err
        finally:
            self.sock.settimeout(None)

    def _receive(self, length: int, deadline: float) -> bytes:
        """``length`` bytes from the helper, looking at it between short waits."""
        chunks: list[bytes] = []
        while length:
            try:
                chunk = self.sock.recv(min(length, 1 << 20))
            except TimeoutError:
                why = self.trouble()
                if why is not None:
                    raise HelperError(f"a measuring helper {why}") from None
                if time.monotonic() >= deadline:
                    raise HelperError(
                        f"a measuring helper did not answer within {REPLY_TIMEOUT:.0f}s"
                    ) from None
                continue
            if not chunk:
                raise HelperError("a measuring helper closed its socket")
            chunks.append(chunk)
            length -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        """Stop the helper now. It holds nothing but a walk of our own directories, and
        one still starting (a second or more on a busy machine) must not delay the
        caller's exit."""
        self.sock.close()
        self.proc.kill()
        self.proc.wait()


_lock = threading.Lock()
_helpers: list[Helper] = []
_started = 0  # helpers ever started in this process
_requests = 0  # requests ever sent to a helper


def started() -> int:
    """How many helper processes this process has started so far."""
    return _started


def requests() -> int:
    """How many parts of walks this process has handed to helpers so far."""
    return _requests


def borrow(count: int) -> list[Helper]:
    """Up to ``count`` idle, ready helpers, marked busy; never waits for one to start.

    Missing helpers are started now, in the background, for a later call. Give them
    back with :func:`give_back`.
    """
    global _started
    if count <= 0:
        return []
    lent: list[Helper] = []
    with _lock:
        for helper in list(_helpers):
            if not helper.busy and helper.trouble() is not None:
                # Gone, or stopped (it would never answer): replaced below.
                _helpers.remove(helper)
                helper.close()
        for helper in _helpers:
            if len(lent) == count:
                break
            if helper.busy:
                continue
            try:
                ready = helper.check_ready()
            except OSError:
                ready = False
            if ready:
                helper.busy = True
                lent.append(helper)
        # At most ``count`` helpers in all: a second measuring thread that finds them busy
        # walks alone rather than starting more processes than there are CPUs.
        for _ in range(count - len(_helpers)):
            try:
                _helpers.append(Helper())
            except OSError:
                break  # no process to spare now: the caller walks alone
            _started += 1
    return lent


def give_back(helpers: Sequence[Helper], *, failed: bool = False) -> None:
    """Return helpers after a request; a failed one is stopped and dropped."""
    with _lock:
        for helper in helpers:
            helper.busy = False
            if failed or not helper.alive():
                if helper in _helpers:
                    _helpers.remove(helper)
                helper.close()


def available(count: int, timeout: float) -> int:
    """Start ``count`` helpers if needed and wait until they are ready (for tests and
    callers that know a large tree is coming). Returns how many are ready."""
    deadline = time.monotonic() + timeout
    while True:
        lent = borrow(count)
        give_back(lent)
        if len(lent) >= count or time.monotonic() >= deadline:
            return len(lent)
        time.sleep(0.02)


@atexit.register
def _stop_all() -> None:
    with _lock:
        while _helpers:
            _helpers.pop().close()


def process_state(pid: int) -> str | None:
    """The state letter of process ``pid`` from ``/proc`` (``R``, ``S``, ``T`` stopped,
    ``Z`` ...), or None when it cannot be read (gone, or no ``/proc``)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # "pid (comm) state ...": the name may hold spaces and parentheses; the last ")" ends it.
    fields = stat[stat.rfind(b")") + 1 :].split()
    return fields[0].decode("ascii", "replace") if fields else None


def _read_exactly(sock: socket.socket, length: int) -> bytes:
    chunks: list[bytes] = []
    while length:
        chunk = sock.recv(min(length, 1 << 20))
        if not chunk:
            raise HelperError("a measuring helper closed its socket")
        chunks.append(chunk)
        length -= len(chunk)
    return b"".join(chunks)


def serve(fd: int, handle: Callable[[Any, list[int]], Any]) -> None:
    """The helper's loop: answer requests on socket ``fd`` with ``handle`` until it
    closes (``usage.serve_helper`` passes the walk; this module never imports ``usage``,
    which imports it)."""
    sock = socket.socket(fileno=fd)
    try:
        sock.sendall(_READY)
    except OSError:
        return  # the caller left while this helper was starting
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, _LENGTH.size, MAX_FDS + 3)
        except OSError:
            return
        if not data:
            return
        try:
            if len(data) < _LENGTH.size:
                data += _read_exactly(sock, _LENGTH.size - len(data))
            (length,) = _LENGTH.unpack(data)
            request = pickle.loads(_read_exactly(sock, length))
            payload = pickle.dumps(handle(request, fds), protocol=pickle.HIGHEST_PROTOCOL)
        finally:
            for received in fds:
                os.close(received)
        sock.sendall(_LENGTH.pack(len(payload)) + payload)
