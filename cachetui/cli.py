"""The ``cachetui`` command line: du, prune, gc, metrics, doctor, demo, serve, the
dashboard, and the fleet's ``agent`` and ``stores`` (``du``/``prune --fleet-url``; see
``fleet_cli``).

Exit codes: 0 success, 1 failure (no store, store error, permission denied), 2 bad usage
(flags, filters, sizes, durations, a root that is not a directory, a prune that cannot be
confirmed), 130 interrupted, 141 the reader of stdout went away (``du | head -1``), as a
tool killed by SIGPIPE would. Errors go to stderr as ``cachetui: <message>``, a sentence
naming the input or the path and what to do, never a traceback or a bare errno. Nothing
here imports Textual unless the dashboard is opened.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from cachetui import __version__, output

if TYPE_CHECKING:
    from cachetui.core import PruneOptions, UsageInfo

__all__ = ["main"]

_FLEET_URL_ENV = "CACHETUI_FLEET_URL"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C'd command
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as `du | head -1` reports for coreutils' du

_PROG = "cachetui"


class CliError(Exception):
    """A message for stderr and an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{_PROG}: {message} (see '{self.prog} --help')\n")


# -- arguments -----------------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    root_help = "the cache store (default: $CACHETUI_ROOT, else the user cache directory)"
    parser = _Parser(
        prog=_PROG,
        description="BuildKit's cache manager with a live terminal dashboard. "
        "With no command, opens the dashboard.",
    )
    parser.add_argument("--root", metavar="DIR", help=root_help)
    parser.add_argument(
        "--read-only", action="store_true", help="dashboard: look, never change anything"
    )
    parser.add_argument(
        "--fleet-url",
        metavar="URL",
        default=os.environ.get(_FLEET_URL_ENV) or None,
        help=f"dashboard: every store of a fleet database instead of one store "
        f"(default: ${_FLEET_URL_ENV})",
    )
    parser.add_argument("--version", action="version", version=f"{_PROG} {__version__}")
    # Subcommands accept --root too; SUPPRESS keeps the top-level value when omitted.
    common = _Parser(add_help=False)
    common.add_argument("--root", metavar="DIR", default=argparse.SUPPRESS, help=root_help)
    fmt = _Parser(add_help=False)
    fmt.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    # du and prune speak buildx's --format (table, json, pretty or a template).
    records_fmt = _Parser(add_help=False)
    records_fmt.add_argument(
        "--format",
        default="table",
        metavar="FORMAT",
        help="table, json, pretty, or a template such as '{{.ID}}\\t{{.Size}}' "
        "('table {{.ID}}\\t{{.Size}}' adds a header)",
    )
    records_fmt.add_argument(
        "--json-keys",
        choices=("snake", "buildx"),
        default="snake",
        help="JSON key names: ours (id, created_at, ...) or buildx's (ID, CreatedAt, ...)",
    )
    du = subs.add_parser(
        "du", parents=[common, records_fmt], help="show disk usage", description="Show disk usage."
    )
    du.add_argument(
        "--filter",
        "-f",
        action="append",
        default=[],
        metavar="F",
        help="containerd filter (repeat to OR), e.g. type==exec.cachemount; or Docker "
        "style (type=regular, until=24h; different keys AND-ed, a repeated key OR-ed)",
    )
    du.add_argument("--verbose", "-v", action="store_true", help="one block per record")
    du.add_argument(
        "--until",
        "--age",
        dest="until",
        metavar="D",
        help="only records not used within D (e.g. 24h): what a keep-duration prune considers",
    )
    _fleet_flags(du, "every store's records from the fleet database")

    prune = subs.add_parser(
        "prune",
        parents=[common, records_fmt],
        help="remove build cache",
        description="Remove unused build cache records, children before parents.",
    )
    prune.add_argument(
        "--all", "-a", action="store_true", help="include internal/frontend and shared records"
    )
    prune.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="F",
        help="filter, containerd (type==regular) or Docker style (type=regular, until=24h)",
    )
    prune.add_argument(
        "--keep-duration", metavar="D", help="keep records used within D (e.g. 48h, 7d)"
    )
    prune.add_argument(
        "--reserved-space", metavar="SIZE", help="always keep this much (e.g. 10GB, 20%%)"
    )
    prune.add_argument(
        "--keep-storage",
        metavar="SIZE",
        help="the older name of --reserved-space (as in docker buildx prune)",
    )
    prune.add_argument(
        "--max-used-space", metavar="SIZE", help="prune down to at most this much (e.g. 80%%)"
    )
    prune.add_argument(
        "--min-free-space", metavar="SIZE", help="prune until the disk has this much free"
    )
    prune.add_argument("--dry-run", action="store_true", help="only show what would go")
    prune.add_argument("--force", "-f", action="store_true", help="do not ask for confirmation")
    prune.add_argument("--verbose", "-v", action="store_true", help="one block per record")
    _fleet_flags(prune, "send the prune to the stores' agents")
    prune.add_argument(
        "--all-stores", action="store_true", help="with --fleet-url: every online store"
    )
    prune.add_argument(
        "--expire",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="with --fleet-url: drop the request if no agent takes it in time (default 60)",
    )

    agent = subs.add_parser(
        "agent",
        parents=[common],
        help="publish this store to a fleet database and run its requests",
        description="Run the fleet agent for one store: register it, heartbeat, publish "
        "every change to the fleet database, run GC on schedule and the requests sent "
        "to this store. Stops cleanly on SIGTERM/SIGINT.",
    )
    agent.add_argument("--fleet-url", required=True, metavar="URL", help=_FLEET_URL_HELP)
    agent.add_argument("--name", metavar="NAME", help="the store's name (default: hostname)")
    agent.add_argument("--gc-policy", metavar="FILE", help="GC list (default: BuildKit's)")
    agent.add_argument(
        "--gc-interval", default="5m", metavar="D", help="run GC every D (default 5m; 0: never)"
    )

    stores = subs.add_parser(
        "stores",
        parents=[fmt],
        help="show every store of a fleet",
        description="Every store of the fleet: online or offline since when, records, "
        "total, reclaimable, disk free and last GC.",
    )
    stores.add_argument("--fleet-url", required=True, metavar="URL", help=_FLEET_URL_HELP)

    doctor = subs.add_parser(
        "doctor",
        parents=[common, fmt],
        help="check the store against the disk",
        description="Check the store (changing nothing); with --fix, repair what is safe: "
        "directories that no record names move to <root>/lost+found/, records whose layer "
        "is missing are forgotten; nothing is deleted.",
    )
    doctor.add_argument("--fix", action="store_true", help="repair what is safe to repair")
    doctor.add_argument(
        "--forget-missing",
        action="store_true",
        help="with --fix: go on even when most layers are missing (the disk looks "
        "unmounted), forgetting their records after listing them",
    )
    doctor.add_argument(
        "--rebuild",
        action="store_true",
        help="rebuild damaged metadata from the layers on disk (keeps a copy of the "
        "damaged file; deletes nothing)",
    )

    from cachetui import gccommand

    gccommand.add_parser(subs, [common, fmt])
    subs.add_parser(
        "metrics",
        parents=[common],
        help="print the store's metrics (Prometheus text format)",
        description="Print records, bytes, free space and GC run counters in "
        "Prometheus' text format.",
    )

    demo = subs.add_parser(
        "demo",
        parents=[common],
        help="build a demo store and open the dashboard on it",
        description="Build a demo store and open the dashboard on it. Without --root the "
        "store goes into a new temporary directory, which is removed on exit unless --keep.",
    )
    demo.add_argument(
        "--keep", action="store_true", help="keep the temporary demo store after the dashboard"
    )
    demo.add_argument("--no-live", action="store_true", help="do not run the simulated build")
    demo.add_argument(
        "--build-only", action="store_true", help="only build the store and print its root"
    )

    serve = subs.add_parser(
        "serve",
        parents=[common],
        help="serve the dashboard to a browser",
        description="Serve the dashboard to a browser (each tab runs its own dashboard). "
        "Listens on localhost unless --host says otherwise.",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    serve.add_argument("--port", type=_port, default=8000, help="port to listen on (default: 8000)")
    serve.add_argument(
        "--public-url",
        metavar="URL",
        help="the address browsers use, when a proxy in front changes it "
        "(default: the address each browser used)",
    )
    serve.add_argument(
        "--fleet-url",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="serve the fleet dashboard of this fleet database (the URL reaches each "
        f"session through ${_FLEET_URL_ENV}, never a command line)",
    )
    serve.add_argument(
        "--read-only",
        action="store_true",
        default=argparse.SUPPRESS,
        help="the served dashboard looks, never changes anything",
    )
    return parser


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"invalid port {text!r} (1-65535)")
    return port


# -- helpers -------------------------------------------------------------------------------

_FLEET_URL_HELP = (
    "the fleet's PostgreSQL database (postgresql://user@host/db?sslmode=...; "
    "PG* variables and ~/.pgpass apply)"
)


def _fleet_flags(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--fleet-url", metavar="URL", help=f"{what}: {_FLEET_URL_HELP}")
    parser.add_argument(
        "--store", action="append", default=[], metavar="NAME", help="with --fleet-url: this store"
    )


def _default_root() -> Path:
    env = os.environ.get("CACHETUI_ROOT")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("cachetui"))


def _resolve_root(args: argparse.Namespace) -> Path:
    given = getattr(args, "root", None)
    if given is not None and not given.strip():
        # ``--root "$STORE"`` with STORE unset must not fall back to the default store
        # (a ``prune --force`` would empty another store).
        raise CliError(
            f"--root is empty ({given!r}): name the store's directory (is a variable unset?)",
            EXIT_USAGE,
        )
    root = Path(given) if given is not None else _default_root()
    try:
        os.stat(root)
    except FileNotFoundError:
        pass
    except OSError as err:  # a name too long, a loop of links, a parent that is a file
        raise CliError(f"root {str(root)!r}: {os.strerror(err.errno or 0)}", EXIT_USAGE) from None
    if root.exists() and not root.is_dir():
        raise CliError(f"root {str(root)!r} is not a directory", EXIT_USAGE)
    return root


def _existing_store(root: Path) -> Path:
    if not (root / "metadata.db").is_file():
        raise CliError(f"no cache store at {root}")
    return root


def _owner(path: Path) -> str:
    """The user name (or uid) owning ``path``, for "run as its owner" advice."""
    import pwd

    try:
        uid = path.stat().st_uid
    except OSError:
        return "its owner"
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def permission_denied(path: Path | str, doing: str) -> CliError:
    """A sentence for EACCES on ``path``: what could not be done, and the two fixes."""
    where = Path(path)
    store = where.parent if where.name == "metadata.db" else where
    return CliError(
        f"cannot {doing} {where}: permission denied. Run cachetui as the store's owner "
        f"({_owner(store)}), or give your user access to it (chown or chmod)"
    )


def _check_access(root: Path, *, write: bool) -> None:
    """Refuse early, with a sentence, what SQLite would report as an errno or a riddle."""
    db = root / "metadata.db"
    if not os.access(db, os.R_OK):
        raise permission_denied(db, "read")
    if not os.access(root, os.X_OK):
        raise permission_denied(root, "enter")
    if write:
        for path in (db, root):
            if not os.access(path, os.W_OK):
                raise permission_denied(path, "change")


def _open(
    root: Path, *, read: bool = False, forget_missing: bool = False
):  # -> CacheManager (core imported lazily)
    """Open the store; ``read``: look only (no repair at open, no waiting for the lock)."""
    from cachetui.core import CacheManager

    _existing_store(root)
    # A look at a store this user cannot change (its root, metadata or layers) reads it.
    writable = os.access(root, os.W_OK | os.X_OK) and all(
        os.access(inside, os.W_OK) or not inside.exists()
        for inside in (root / "metadata.db", root / "snapshots")
    )
    read_only = read and not writable
    _check_access(root, write=not read_only)
    return CacheManager.open(
        root, read_only=read_only, repair=not read, forget_missing=forget_missing
    )


def _warn_if_damaged(cm: Any) -> None:
    """Say on stderr that a damaged store's listing is partial: an empty table from an
    emptied ``metadata.db`` must not read as an empty store (its layers are all there)."""
    damage = cm.store.damage_message()
    if damage is not None:
        _out(
            sys.stderr,
            f"{_PROG}: warning: {damage}: only the records that could be read are listed; "
            "`cachetui doctor` says more and `cachetui doctor --rebuild` repairs it",
        )


class _Stderr:
    """What is on stderr's current line, so a message never lands at its end.

    ``progress``: a progress line (erased before anything else is written);
    ``prompt``: a question waiting for an answer (the message goes on the next line).
    """

    line = ""


def _progress(message: str) -> None:
    """Progress for long operations, on stderr, only when stderr is a terminal."""
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\x1b[2K{message}")
        sys.stderr.flush()
        _Stderr.line = "progress"


def _progress_done() -> None:
    if sys.stderr.isatty() and _Stderr.line == "progress":
        sys.stderr.write("\r\x1b[2K")
        sys.stderr.flush()
    _Stderr.line = ""


def _own_line() -> None:
    """Start stderr's next write at the beginning of an empty line."""
    if _Stderr.line == "progress":
        _progress_done()
    elif _Stderr.line == "prompt":
        sys.stderr.write("\n")  # the answer never came: leave the question as it is
    _Stderr.line = ""


def _parse_filters(texts: Sequence[str]) -> tuple[str, ...]:
    from cachetui.core import FilterSyntaxError, parse_filters

    for text in texts:
        try:
            parse_filters([text])
        except FilterSyntaxError as err:
            shown = err.filter_text or text
            caret = " " * (2 + max(err.position, 0)) + "^"
            raise CliError(f"--filter: {err}\n  {shown}\n{caret}", EXIT_USAGE) from None
    return tuple(texts)


def _out(stream: TextIO, lines: Sequence[str] | str) -> None:
    if isinstance(lines, str):
        lines = [lines]
    if stream is sys.stderr:
        _own_line()
    for line in lines:
        stream.write(line + "\n")
    stream.flush()


# -- commands ------------------------------------------------------------------------------


def _read_filters(items: Sequence[str]) -> tuple[tuple[str, ...], float | None]:
    """``--filter`` values as containerd filters, and a Docker ``until`` duration."""
    from cachetui.buildx import read_filters
    from cachetui.core import FilterSyntaxError

    try:
        read = read_filters(items)
    except FilterSyntaxError as err:
        caret = " " * (2 + max(err.position, 0)) + "^"
        raise CliError(f"--filter: {err}\n  {err.filter_text}\n{caret}", EXIT_USAGE) from None
    if read.docker:
        return read.filters, read.until
    return _parse_filters(read.filters), None


def _cmd_du(args: argparse.Namespace) -> int:
    if args.fleet_url is not None:
        from cachetui import fleet_cli

        return fleet_cli.cmd_du(args)
    if args.store:
        raise CliError("--store needs --fleet-url", EXIT_USAGE)
    from cachetui import buildx
    from cachetui.units import parse_duration

    root = _resolve_root(args)
    template = buildx.check_format(args.format, verbose=args.verbose)
    filters, until = _read_filters(args.filter)
    age: float | None = None
    if args.until is not None:
        age = parse_duration(args.until, what="--until")
        if until is not None:
            raise CliError(
                "--until and --filter until= both give the age: keep one of them", EXIT_USAGE
            )
    elif until is not None:
        age = until  # buildx's until: what a prune with that keep duration would consider

    with _open(root, read=True) as cm:
        _warn_if_damaged(cm)
        rows = cm.disk_usage(filters, age_limit=age or None)
        now = cm.now()
        if args.format == "json":
            _out(sys.stdout, [buildx.json_line(info, args.json_keys) for info in rows])
            return EXIT_OK
        if template is not None:
            _out(sys.stdout, buildx.render_template(template, rows, now))
            return EXIT_OK
        if args.verbose or args.format == "pretty":
            lines: list[str] = []
            for info in rows:
                lines.extend(output.render_verbose(info, now))
                lines.append("")
        else:
            lines = output.render_du_table(rows, now)
        if not filters and age is None:
            if not (args.verbose or args.format == "pretty"):
                lines.append("")
            lines.extend(output.render_totals(cm.totals(rows)))
        _out(sys.stdout, lines)
    return EXIT_OK


def _prompt(question: str) -> bool:
    sys.stderr.write(question)
    sys.stderr.flush()
    _Stderr.line = "prompt"
    answer = sys.stdin.readline()
    _Stderr.line = "" if answer.endswith("\n") else "prompt"
    return answer.strip().lower() in ("y", "yes")


def _cmd_prune(args: argparse.Namespace) -> int:
    if args.fleet_url is not None:
        from cachetui import fleet_cli

        return fleet_cli.cmd_prune(args)
    if args.store or args.all_stores:
        raise CliError("--store and --all-stores need --fleet-url", EXIT_USAGE)
    root = _existing_store(_resolve_root(args))
    from cachetui import buildx
    from cachetui.core import PruneOptions, PruneRefused, disk_stat
    from cachetui.units import format_bytes_buildx, parse_duration, parse_size

    # Each parser's InvalidError names the flag and the value; main() makes it exit 2.
    template = buildx.check_format(args.format, verbose=args.verbose)
    filters, until = _read_filters(args.filter)
    keep = (
        0
        if args.keep_duration is None
        else parse_duration(args.keep_duration, what="--keep-duration")
    )
    if until is not None:
        if args.keep_duration is not None:
            raise CliError(
                "--keep-duration and --filter until= both give the keep duration: keep one of them",
                EXIT_USAGE,
            )
        keep = until
    reserved = _reserved_space(args)
    disk_total = disk_stat(root).total  # percentages are of the disk holding the store
    sizes: dict[str, int] = {}
    for flag, text in (
        reserved,
        ("--max-used-space", args.max_used_space),
        ("--min-free-space", args.min_free_space),
    ):
        sizes[flag] = 0 if text is None else parse_size(text, disk_total=disk_total, what=flag)
    policy = PruneOptions(
        all=args.all,
        filters=filters,
        keep_duration=keep,
        reserved_space=sizes[reserved[0]],
        max_used_space=sizes["--max-used-space"],
        min_free_space=sizes["--min-free-space"],
    )
    interactive = sys.stdin.isatty()
    if not (args.force or args.dry_run or interactive):
        raise CliError(
            "prune needs confirmation but stdin is not a terminal: use --force "
            "(or --dry-run to only show what would be removed)",
            EXIT_USAGE,
        )
    as_json = args.format == "json"
    pretty = args.verbose or args.format == "pretty"

    def record_lines(info: UsageInfo) -> list[str]:
        if as_json:
            return [buildx.json_line(info, args.json_keys)]
        if template is not None and not template.table:
            return [template.render(info, now)]
        if pretty:
            return [*output.render_verbose(info, now), ""]
        return [output.prune_row(info, now)]

    # A dry run is a look: it finishes nothing a crash left and upgrades nothing.
    with _open(root, read=args.dry_run) as cm:
        now = cm.now()
        kept: list[tuple[str, str]] = []  # records a filesystem mounted in the layer keeps
        preview = cm.prune(policy, dry_run=True, refused=kept)
        preview_size = sum(info.size for info in preview)
        if not args.dry_run and not args.force and preview:
            what = (
                f"all build cache: {len(preview)} records"
                if args.all
                else f"{len(preview)} build cache records"
            )
            question = (
                f"WARNING! This will remove {what} ({format_bytes_buildx(preview_size)}). "
                "Are you sure you want to continue? [y/N] "
            )
            if not _prompt(question):
                _out(sys.stderr, "cancelled: nothing removed")
                return EXIT_OK
        if args.dry_run:
            removed = preview
            if template is not None and template.table:
                _out(sys.stdout, buildx.render_template(template, removed, now))
            elif as_json or template is not None:
                _out(sys.stdout, [line for info in removed for line in record_lines(info)])
            else:
                lines = [output.prune_header()] if removed and not pretty else []
                lines += [line for info in removed for line in record_lines(info)]
                lines.append(f"Would free:\t{format_bytes_buildx(preview_size)}")
                if policy.has_space_limit:
                    lines += _explain_limit(cm, root, policy, preview)
                _out(sys.stdout, lines)
            for record_id, reason in kept:
                _out(sys.stderr, f"{_PROG}: would refuse to prune {record_id}: {reason}")
            return EXIT_OK
        count = 0
        header_done = False

        def on_prune(info: UsageInfo) -> None:
            nonlocal count, header_done
            count += 1
            if template is not None and template.table:
                return  # aligned columns: printed once every record is known
            if not (as_json or template is not None or pretty or header_done):
                _out(sys.stdout, output.prune_header())
                header_done = True
            _out(sys.stdout, record_lines(info))
            if preview:
                _progress(f"removed {count} of about {len(preview)} records")

        refusals: list[tuple[str, str]] = []
        try:
            removed = cm.prune(policy, on_prune=on_prune)
        except PruneRefused as refused:
            # The rest went (as BuildKit skips what it cannot release): report it, then
            # every record kept with its reason, and exit 1.
            removed, refusals = refused.removed, refused.refusals
        finally:
            _progress_done()
        if template is not None and template.table:
            _out(sys.stdout, buildx.render_template(template, removed, now))
        elif not as_json and template is None:
            _out(sys.stdout, f"Total:\t{format_bytes_buildx(sum(i.size for i in removed))}")
        for record_id, reason in refusals:
            _out(sys.stderr, f"{_PROG}: refusing to prune {record_id}: {reason}")
    return EXIT_FAILURE if refusals else EXIT_OK


def _reserved_space(args: argparse.Namespace) -> tuple[str, str | None]:
    """``--reserved-space``, or its older name ``--keep-storage`` (buildx's meaning: a
    floor that always stays, not buildctl's cap), as (flag, text)."""
    if args.keep_storage is None:
        return "--reserved-space", args.reserved_space
    if args.reserved_space is not None:
        raise CliError(
            "--keep-storage is the older name of --reserved-space: give one of them",
            EXIT_USAGE,
        )
    text = args.keep_storage.strip()
    if text.replace(".", "", 1).isdigit():
        raise CliError(
            f"--keep-storage {text!r}: a bare number is bytes to docker buildx but "
            f"megabytes to buildctl; write the unit ({text}MB or {text}B). To cap the "
            "cache as buildctl's --keep-storage does, use --max-used-space",
            EXIT_USAGE,
        )
    return "--keep-storage", args.keep_storage


def _cmd_agent(args: argparse.Namespace) -> int:
    from cachetui import fleet_cli

    return fleet_cli.cmd_agent(args, _resolve_root(args))


def _cmd_stores(args: argparse.Namespace) -> int:
    from cachetui import fleet_cli

    return fleet_cli.cmd_stores(args)


def _explain_limit(
    cm: Any, root: Path, policy: PruneOptions, preview: Sequence[UsageInfo]
) -> list[str]:
    """The limit a space-limited prune works to, from the core's own calculation."""
    from cachetui.core import disk_stat, keep_limit

    dstat = disk_stat(root)
    total = sum(info.size for info in cm.disk_usage() if not info.shared)
    keep = keep_limit(total, dstat, policy)
    assert keep is not None  # the policy has a space limit
    return output.explain_space_limit(
        policy, total=total, keep=keep, free=dstat.free, removed=preview
    )


def _cmd_doctor(args: argparse.Namespace) -> int:
    root = _resolve_root(args)
    if args.forget_missing and not args.fix:
        raise CliError("--forget-missing only goes with --fix", EXIT_USAGE)
    if args.rebuild and args.fix:
        raise CliError("--rebuild and --fix are separate steps: run --rebuild first", EXIT_USAGE)
    if args.rebuild:
        from cachetui.core import rebuild_store

        if not (root / "snapshots").is_dir():
            _existing_store(root)
        findings = rebuild_store(root)
    else:
        with _open(root, read=not args.fix, forget_missing=args.forget_missing) as cm:
            _progress("checking the store...")
            try:
                findings = cm.doctor(fix=args.fix, forget_missing=args.forget_missing)
            finally:
                _progress_done()
    if args.format == "json":
        _out(sys.stdout, [json.dumps(output.finding_json(f)) for f in findings])
    else:
        _out(sys.stdout, output.render_findings(findings))
    return EXIT_FAILURE if any(not f.fixed for f in findings) else EXIT_OK


def _cmd_gc(args: argparse.Namespace) -> int:
    from cachetui import gccommand

    root = _existing_store(_resolve_root(args))
    if args.watch:
        from cachetui import gcwatch

        return gcwatch.watch(args, root, _open)
    return gccommand.command(args, root, _open)


def _cmd_metrics(args: argparse.Namespace) -> int:
    from cachetui import metrics

    root = _existing_store(_resolve_root(args))
    sys.stdout.write(metrics.render(root))
    sys.stdout.flush()
    return EXIT_OK


def _load_dashboard() -> Callable[..., int]:
    try:
        from cachetui.app import run_dashboard
    except ImportError as err:
        raise CliError(f"the dashboard is not available ({err})") from None
    return run_dashboard


def _cmd_dashboard(args: argparse.Namespace) -> int:
    if args.fleet_url:
        from cachetui.fleet.url import check_url

        check_url(args.fleet_url)  # a bad URL is a usage error naming it (masked)
        run_dashboard = _load_dashboard()
        return int(run_dashboard(Path("."), read_only=args.read_only, fleet_url=args.fleet_url))
    root = _resolve_root(args)
    if args.read_only:
        _existing_store(root)
    run_dashboard = _load_dashboard()
    return int(run_dashboard(root, read_only=args.read_only) or 0)


def _cmd_demo(args: argparse.Namespace) -> int:
    import tempfile

    from cachetui import demo

    temporary = getattr(args, "root", None) is None  # --root "" is refused, not temporary
    if temporary:
        root = Path(tempfile.mkdtemp(prefix="cachetui-demo-"))
    else:
        root = _resolve_root(args)
        if root.exists() and any(root.iterdir()):
            raise CliError(f"demo root {root} is not empty (the demo builds a new store)")
    if args.build_only:  # a script asked for a store: it is theirs to keep
        _build_demo(demo, root)
        _out(sys.stdout, str(root))
        return EXIT_OK
    try:
        run_dashboard = _load_dashboard()
        if temporary:
            keep = "kept on exit" if args.keep else "removed on exit (--keep keeps it)"
            _out(sys.stderr, f"demo store: {root} ({keep})")
        _build_demo(demo, root)
        # The dashboard starts (and stops) the simulated build itself.
        return int(run_dashboard(root, simulator=not args.no_live) or 0)
    finally:
        if temporary:
            _remove_demo_store(root, keep=args.keep)


def _build_demo(demo: Any, root: Path) -> None:
    _progress(f"building a demo store in {root}...")
    try:
        demo.build_demo_store(root)
    finally:
        _progress_done()


def _remove_demo_store(root: Path, *, keep: bool) -> None:
    """Remove the demo's own temporary store, with the core's safe remover (it never
    follows a link out of the store nor crosses into a mounted filesystem)."""
    if keep:
        _out(sys.stderr, f"kept the demo store {root}")
        return
    from cachetui.core import SnapshotError, remove_tree

    try:
        remove_tree(root)
    except (SnapshotError, OSError) as err:
        _out(sys.stderr, f"{_PROG}: could not remove the demo store {root}: {err}")
        return
    _out(sys.stderr, f"removed the demo store {root}")


def _cmd_serve(args: argparse.Namespace) -> int:
    fleet_url = args.fleet_url
    root = Path(".") if fleet_url else _resolve_root(args)
    if fleet_url:
        from cachetui.fleet.url import check_url, mask

        check_url(fleet_url)
        # Each session's dashboard finds the URL in its environment: a password in it
        # never shows in a process list.
        os.environ[_FLEET_URL_ENV] = fleet_url
    elif args.read_only:
        _existing_store(root)
    try:
        from cachetui import serve
    except ImportError as err:  # pragma: no cover - textual-serve is a dependency
        raise CliError(f"serving is not available ({err})") from None
    if args.public_url is not None and not args.public_url.startswith(("http://", "https://")):
        raise CliError(
            f"--public-url: {args.public_url!r} is not an http:// or https:// URL", EXIT_USAGE
        )
    warning = serve.not_local_warning(args.host, read_only=args.read_only)
    if warning:
        _out(sys.stderr, f"{_PROG}: {warning}")
    dashboard_args = [] if fleet_url else ["--root", str(root.absolute())]
    if args.read_only:
        dashboard_args.append("--read-only")
    serve.serve(
        dashboard_args,
        host=args.host,
        port=args.port,
        public_url=args.public_url,
        title=f"cachetui: {mask(fleet_url) if fleet_url else root.absolute()}",
    )
    return EXIT_OK


_COMMANDS: dict[str | None, Callable[[argparse.Namespace], int]] = {
    None: _cmd_dashboard,
    "du": _cmd_du,
    "prune": _cmd_prune,
    "doctor": _cmd_doctor,
    "gc": _cmd_gc,
    "metrics": _cmd_metrics,
    "demo": _cmd_demo,
    "serve": _cmd_serve,
    "agent": _cmd_agent,
    "stores": _cmd_stores,
}


def _show_core_warnings() -> None:
    """The core's warnings (waiting for another process's write lock) on stderr."""
    import logging

    core = logging.getLogger("cachetui.core")
    if not any(getattr(h, "_cachetui_cli", False) for h in core.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{_PROG}: %(message)s"))
        handler._cachetui_cli = True  # type: ignore[attr-defined]
        core.addHandler(handler)
        core.setLevel(logging.WARNING)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the flush at exit cannot fail on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        args = _build_parser().parse_args(argv)
        from cachetui.core import CacheError, InvalidError

        if args.command is not None:  # the dashboard shows its own messages, not stderr
            _show_core_warnings()
        try:
            return _COMMANDS[args.command](args)
        except CliError as err:
            _out(sys.stderr, f"{_PROG}: {err}")
            return err.code
        except InvalidError as err:
            _out(sys.stderr, f"{_PROG}: {output.escape(str(err))}")
            return EXIT_USAGE
        except CacheError as err:
            _out(sys.stderr, f"{_PROG}: {output.escape(str(err))}")
            return EXIT_FAILURE
    except KeyboardInterrupt:
        _out(sys.stderr, f"{_PROG}: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``cachetui du | head -1``): stop quietly, as du does.
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    except PermissionError as err:
        path = err.filename if err.filename is not None else "the store"
        _out(sys.stderr, f"{_PROG}: {permission_denied(path, 'use')}")
        return EXIT_FAILURE
    except OSError as err:
        where = f"{err.filename}: " if err.filename is not None else ""
        _out(sys.stderr, f"{_PROG}: {where}{err.strerror or err}")
        return EXIT_FAILURE


if __name__ == "__main__":
    raise SystemExit(main())
