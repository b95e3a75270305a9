"""Fleet URLs: checking them, masking their passwords, and opening a Peewee database.

The URL (or a libpq ``key=value`` conninfo string) is handed to libpq unchanged, so
everything libpq understands works as with ``psql``: ``PG*`` environment variables,
``~/.pgpass``, ``sslmode`` and the other query parameters. A password in it is never
printed, logged or shown: every message about a URL goes through ``mask()``.
"""

from __future__ import annotations

import contextlib
import re
from urllib.parse import urlsplit, urlunsplit

import peewee

from cachetui.core import InvalidError

__all__ = ["FleetURLError", "check_url", "drop_connection", "mask", "open_database"]

_SCHEMES = ("postgresql://", "postgres://")
_MASK = "***"
# password=... inside a conninfo string, quoted or not
_CONNINFO_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
# ?password=... or &password=... in a URL's query
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


class FleetURLError(InvalidError):
    """A fleet URL that cannot be used (its message never holds the password)."""


def mask(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and screens)."""
    text = str(url)
    if "://" in text:  # any URL, even of the wrong scheme, is masked the same way
        try:
            parts = urlsplit(text)
        except ValueError:
            return _QUERY_PASSWORD.sub(r"\1" + _MASK, re.sub(r":[^:@/]*@", ":***@", text))
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            if ":" in userinfo:
                user = userinfo.split(":", 1)[0]
                netloc = f"{user}:{_MASK}@{hostport}"
        query = _QUERY_PASSWORD.sub(r"\1" + _MASK, "?" + parts.query)[1:] if parts.query else ""
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return _CONNINFO_PASSWORD.sub(r"\1" + _MASK, text)


def check_url(url: str) -> str:
    """The URL as libpq should get it; ``FleetURLError`` naming it (masked) when unusable."""
    text = (url or "").strip()
    if not text:
        raise FleetURLError("empty fleet URL: expected postgresql://[user@]host[:port]/database")
    if text.startswith("postgres://"):
        text = "postgresql://" + text[len("postgres://") :]
    if text.startswith("postgresql://"):
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError as err:
            raise FleetURLError(f"invalid fleet URL {mask(text)}: {err}") from None
        return text
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise FleetURLError(
            f"invalid fleet URL {mask(text)}: scheme {scheme!r} is not postgresql:// "
            "(the fleet's shared state is a PostgreSQL database)"
        )
    if "=" not in text:
        raise FleetURLError(
            f"invalid fleet URL {mask(text)}: expected postgresql://... or key=value pairs"
        )
    return text


def open_database(url: str, *, connect_timeout: float = 5.0) -> peewee.PostgresqlDatabase:
    """A Peewee ``PostgresqlDatabase`` (psycopg 3) over ``url``, not connected yet.

    The URL goes to libpq as the conninfo, untouched, so ``PG*`` variables, ``~/.pgpass``
    and parameters like ``sslmode`` apply. Transactions are explicit (``atomic()``).
    """
    conninfo = check_url(url)
    return peewee.PostgresqlDatabase(
        conninfo,
        conninfo=conninfo,
        # Peewee would pass a conninfo string as the database name too: None keeps libpq
        # reading the name from the conninfo (and ~/.pgpass matching it).
        dbname=None,
        connect_timeout=max(1, round(connect_timeout)),
        prefer_psycopg3=True,
        autoconnect=True,
        # a server that dies mid-statement must not hang the agent forever
        options="-c statement_timeout=60000",
    )


def drop_connection(db: peewee.Database) -> None:
    """Forget this thread's connection after a failure; the next statement opens a new
    one. Peewee refuses to close inside a transaction it believes open (the server may
    have dropped it mid-transaction), so the state is then reset by hand."""
    try:
        db.close()
    except Exception:
        state = db._state  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            if state.conn is not None:
                state.conn.close()
        state.reset()


def describe_error(err: BaseException, url: str) -> str:
    """A one-line message for a connection failure, the password masked."""
    text = " ".join(str(err).split()) or type(err).__name__
    secret = _password_of(url)
    if secret:
        text = text.replace(secret, _MASK)
    return f"fleet database {mask(url)}: {text}"


def _password_of(url: str) -> str | None:
    text = str(url)
    if text.startswith(_SCHEMES):
        try:
            return urlsplit(text).password
        except ValueError:
            return None
    found = _CONNINFO_PASSWORD.search(text)
    return found.group(2).strip("'") if found else None
