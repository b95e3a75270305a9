"""``cachetui serve`` without a browser: flags, the warning off localhost, the page's URLs.

The browser itself is in tests/web; these run the real server as a subprocess and read
its page over HTTP.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from cachetui.core import CacheManager
from cachetui.serve import dashboard_command, is_loopback, not_local_warning
from tests.web.browser import REPO, served


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cachetui", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    CacheManager.open(path).close()
    return path


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("127.0.0.53", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("build-box", False),
    ],
)
def test_only_loopback_counts_as_local(host: str, local: bool) -> None:
    assert is_loopback(host) is local
    warning = not_local_warning(host, read_only=False)
    assert (warning is None) is local
    if warning:
        assert host in warning and "--read-only" in warning


def test_the_read_only_warning_does_not_offer_read_only() -> None:
    warning = not_local_warning("0.0.0.0", read_only=True)
    assert warning is not None and "--read-only" not in warning and "look" in warning


def test_each_session_runs_this_cachetui_with_the_dashboard_options(tmp_path: Path) -> None:
    command = dashboard_command(["--root", str(tmp_path / "a b"), "--read-only"])
    assert command.startswith(sys.executable)
    assert "-m cachetui --root" in command and "'" + str(tmp_path / "a b") + "'" in command
    assert command.endswith("--read-only")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "0"], "invalid port"),
        (["--port", "http"], "invalid port"),
        (["--port", "70000"], "invalid port"),
        (["--public-url", "example.org"], "--public-url"),
    ],
)
def test_bad_flags_exit_2_naming_them(root: Path, args: list[str], message: str) -> None:
    result = run("serve", "--root", str(root), *args)
    assert result.returncode == 2, result
    assert message in result.stderr and "Traceback" not in result.stderr


def test_read_only_needs_an_existing_store(tmp_path: Path) -> None:
    result = run("serve", "--root", str(tmp_path / "none"), "--read-only")
    assert result.returncode == 1 and "no cache store" in result.stderr
    assert not (tmp_path / "none").exists()


def test_a_busy_port_is_an_error_not_a_traceback(root: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("serve", "--root", str(root), "--port", str(port))
    assert result.returncode == 1, result
    assert "cachetui:" in result.stderr and "Traceback" not in result.stderr


def test_off_localhost_it_warns_and_the_page_follows_the_browsers_address(
    root: Path, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    with served(root, "--host", "0.0.0.0", log=log) as url:
        request = urllib.request.Request(url, headers={"Host": "builds.example:8443"})
        with urllib.request.urlopen(request, timeout=30) as response:
            page = response.read().decode()
    assert "warning: listening on 0.0.0.0, not on localhost" in log.read_text()
    assert 'data-session-websocket-url="ws://builds.example:8443/ws"' in page
    assert "http://builds.example:8443/static/js/textual.js" in page


def test_on_localhost_there_is_no_warning_and_a_public_url_is_kept(
    root: Path, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    with (
        served(root, "--public-url", "https://cache.example/", log=log) as url,
        urllib.request.urlopen(url, timeout=30) as response,
    ):
        page = response.read().decode()
    assert "warning" not in log.read_text()
    assert "serving the dashboard on https://cache.example/" in log.read_text()
    assert 'data-session-websocket-url="wss://cache.example/ws"' in page


@pytest.mark.parametrize("command", [[], ["serve"]])
def test_a_bad_fleet_url_is_a_usage_error_that_hides_the_password(command: list[str]) -> None:
    result = run(*command, "--fleet-url", "mysql://admin:hunter2@db/fleet")
    assert result.returncode == 2, result
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr
