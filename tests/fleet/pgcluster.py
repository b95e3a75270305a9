"""A throwaway PostgreSQL cluster for the fleet tests, started from the installed binaries.

``initdb`` and ``pg_ctl`` from ``/usr/lib/postgresql/<version>/bin`` (or ``$PG_BINDIR``)
build a cluster in a fresh temporary directory that listens on a free TCP port of
127.0.0.1 and on a unix socket inside that directory. PostgreSQL refuses to run as root,
so when the tests run as root the server runs as ``nobody`` (through ``setpriv``) and the
directory is handed to it.

Authentication: unix-socket connections are trusted (the tests' own administration);
TCP connections need the superuser's password (``PASSWORD``), so the tests exercise a
real password in a URL, ``~/.pgpass`` and ``PG*`` variables.

Tests may stop the server (``kill()``, ``stop()``) and ``start()`` it again on the same
port: the session fixture restarts it after each test if a test left it down.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

SUPERUSER = "postgres"
PASSWORD = "s3cret-pw"


def find_bindir() -> Path | None:
    """The newest installed server's bin directory, or None."""
    override = os.environ.get("PG_BINDIR")
    if override:
        return Path(override) if (Path(override) / "initdb").exists() else None
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (read from /proc: no procps needed)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


class PgCluster:
    """One cluster: ``start()``, ``stop()``, ``kill()``, ``url(db)``, ``create_database()``."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.base = Path(tempfile.mkdtemp(prefix="cachetui-pg-"))
        self.data = self.base / "data"
        self.sock = self.base / "sock"
        self.log = self.base / "server.log"
        self.port = free_port()
        self._user: pwd.struct_passwd | None = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
        self._db_counter = 0

    # -- running as the unprivileged user ------------------------------------------------

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(a) for a in args]
        if self._user is not None:
            command = [
                "setpriv",
                f"--reuid={self._user.pw_uid}",
                f"--regid={self._user.pw_gid}",
                "--clear-groups",
                *command,
            ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return subprocess.run(
            command, env=env, capture_output=True, text=True, check=check, timeout=120
        )

    def init(self) -> None:
        self.sock.mkdir()
        pwfile = self.base / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self._user is not None:
            os.chmod(self.base, 0o755)
            for path in (self.base, self.sock, pwfile):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        self._run(
            self.bindir / "initdb",
            "-D",
            self.data,
            "-U",
            SUPERUSER,
            "--pwfile",
            pwfile,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.sock}'\n"
                # fsync off: the machine never crashes in these tests, only the server is
                # killed, and a killed server loses no committed transaction without it.
                "fsync = off\nfull_page_writes = off\n"
                "max_connections = 200\nshared_buffers = 32MB\n"
            )

    def start(self) -> None:
        if self.running():
            return
        self._run(
            self.bindir / "pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "start"
        )

    def stop(self) -> None:
        self._run(self.bindir / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop", check=False)

    def kill(self) -> None:
        """Kill the server outright (SIGKILL to the postmaster and every backend)."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        # Backends first would let the postmaster restart them; kill the whole group.
        children = _children(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self._alive(pid):
            time.sleep(0.02)
        # A killed postmaster may stay a zombie nobody reaps (in a container): PostgreSQL
        # would take it for a live server and refuse to start, so its lock file goes.
        for lock in (self.data / "postmaster.pid", *self.sock.glob(".s.PGSQL.*.lock")):
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
        time.sleep(0.1)

    @staticmethod
    def _alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        # A zombie (not reaped yet) is gone for our purposes.
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().split()[2] != "Z"
        except OSError:
            return False

    def postmaster_pid(self) -> int | None:
        try:
            first = (self.data / "postmaster.pid").read_text().splitlines()[0]
        except (OSError, IndexError):
            return None
        pid = int(first)
        return pid if self._alive(pid) else None

    def running(self) -> bool:
        return self.postmaster_pid() is not None and self._accepts()

    def _accepts(self) -> bool:
        try:
            with psycopg.connect(self.admin_conninfo("postgres"), connect_timeout=2):
                return True
        except psycopg.Error:
            return False

    def destroy(self) -> None:
        if self.postmaster_pid() is not None:
            self._run(
                self.bindir / "pg_ctl",
                "-D",
                self.data,
                "-m",
                "immediate",
                "-w",
                "stop",
                check=False,
            )
        shutil.rmtree(self.base, ignore_errors=True)

    # -- databases ------------------------------------------------------------------------

    def admin_conninfo(self, dbname: str) -> str:
        return f"host={self.sock} port={self.port} user={SUPERUSER} dbname={dbname}"

    def url(self, dbname: str, *, password: bool = True) -> str:
        secret = f":{PASSWORD}" if password else ""
        return f"postgresql://{SUPERUSER}{secret}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, prefix: str = "t") -> str:
        self._db_counter += 1
        name = f"{prefix}_{os.getpid()}_{self._db_counter}"
        with psycopg.connect(self.admin_conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
