"""``cachetui serve``: the dashboard in a browser, through ``textual-serve``.

Each browser tab that connects starts its own dashboard process (``python -m cachetui
[dashboard options]``) driven over a websocket; this module only builds that command,
checks where the server listens and runs it. The dashboard itself is unchanged: the same
App, the same keys, the same ``--read-only``.

The page that ``textual-serve`` hands out names the websocket by an absolute URL. With
no ``--public-url`` that URL is taken from the address the browser used (its ``Host``
header), so a server listening on ``0.0.0.0`` works from any machine that reaches it and
a proxy in front keeps working; ``--public-url`` fixes it for a proxy that rewrites hosts.
"""

from __future__ import annotations

import ipaddress
import shlex
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["dashboard_command", "is_loopback", "not_local_warning", "serve"]


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def not_local_warning(host: str, *, read_only: bool) -> str | None:
    """The warning printed when the server is reachable from other machines, else None."""
    if is_loopback(host):
        return None
    power = (
        "can look at every record"
        if read_only
        else "can prune, commit, hold and release records (add --read-only to look only)"
    )
    return (
        f"warning: listening on {host}, not on localhost: anyone who can reach this port "
        f"{power}; there is no login, so put it behind a proxy that authenticates"
    )


def dashboard_command(dashboard_args: Sequence[str]) -> str:
    """The shell command each browser session runs: this Python, this cachetui."""
    return shlex.join([sys.executable, "-m", "cachetui", *dashboard_args])


def serve(
    dashboard_args: Sequence[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    public_url: str | None = None,
    title: str = "cachetui",
) -> None:
    """Serve the dashboard until SIGINT or SIGTERM (blocks)."""
    server = _make_server(
        dashboard_command(dashboard_args), host=host, port=port, public_url=public_url, title=title
    )
    server.serve()


def _make_server(command: str, *, host: str, port: int, public_url: str | None, title: str) -> Any:
    # textual-serve (and aiohttp) are imported only when serving: the other commands
    # never pay for them.
    import aiohttp_jinja2
    from aiohttp import web
    from textual_serve.server import Server

    class DashboardServer(Server):
        """textual-serve's server, with URLs that follow the browser's address."""

        def __init__(self) -> None:
            super().__init__(command, host=host, port=port, title=title, public_url=public_url)
            self.fixed_url = public_url

        def initialize_logging(self) -> None:
            # textual-serve logs every connection with a banner; the operator only needs
            # where it listens and errors, which ``on_startup`` and aiohttp print.
            import logging

            logging.basicConfig(level="WARNING", format="cachetui serve: %(message)s")

        async def on_startup(self, app: web.Application) -> None:
            url = self.fixed_url or f"http://{_url_host(host)}:{port}"
            print(f"cachetui: serving the dashboard on {url} (Ctrl+C stops)", flush=True)

        @aiohttp_jinja2.template("app_index.html")
        async def handle_index(self, request: web.Request) -> dict[str, Any]:
            base = self.fixed_url or f"{request.scheme}://{request.host}"
            base = base.rstrip("/")
            static = base + str(request.app.router["static"].url_for(filename="/"))
            ws = base + str(request.app.router["websocket"].url_for())
            ws = ("wss:" if ws.startswith("https:") else "ws:") + ws.split(":", 1)[1]
            font_size = request.query.get("fontsize", "16")
            return {
                "font_size": int(font_size) if font_size.isdigit() else 16,
                "app_websocket_url": ws,
                "config": {"static": {"url": static.rstrip("/") + "/"}},
                "application": {"name": self.title},
            }

    return DashboardServer()


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "localhost"  # the address to type on this machine
    return f"[{host}]" if ":" in host else host
