"""The fleet behind the dashboard's seam: every host's store, read from PostgreSQL.

``FleetService`` provides what ``CacheService`` provides (see ``cachetui.service``), so
the same App shows a fleet: same columns, keys and panes. What differs:

* **Reading**: the replica the agents keep (``cachetui.fleet.reader``). ``load`` reads
  the stores and their totals only (one small query: the first paint never waits for
  records); ``expand(key)`` reads one store's records and holders when its row is first
  opened. Keys are ``"NAME/"`` for a store and ``"NAME/ID"`` for a record
  (``cachetui.fleet_views``).
* **Live**: one ``LISTEN`` connection (no polling). A notification names the store and
  what changed; ``apply`` re-reads only that: the store rows, or the records of that
  store written since the version already shown, or the ids deleted. A store whose
  heartbeat stops is shown offline when its limit passes (a local timer on the last
  heartbeat seen, not a query). When the server goes away the view says since when it
  is stale; the listener reconnects with backoff and re-reads everything.
* **Actions**: each becomes a request to that store's agent (``cachetui.fleet.requests``)
  and blocks its worker until the agent's result: the row shows the request as pending
  meanwhile, progress goes to ``on_notice``, and a refusal, a failure, an expired
  request or an offline host is an error whose message names the host.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from types import MappingProxyType
from typing import Any

from cachetui.core import (
    ChangeSet,
    FilterSyntaxError,
    HolderInfo,
    InvalidError,
    NotFoundError,
    PruneOptions,
    RecordState,
    Totals,
    is_expression,
    parse_filters,
    search_words,
    usage_fields,
)
from cachetui.fleet.reader import (
    OFFLINE_AFTER,
    FleetError,
    FleetHolder,
    FleetReader,
    FleetRecord,
    Listener,
    RequestInfo,
    StoreInfo,
    format_age,
)
from cachetui.fleet.requests import submit, wait
from cachetui.fleet.url import mask
from cachetui.fleet_views import (
    DESCRIPTION,
    SIZE,
    FleetChildren,
    FleetRows,
    FleetView,
    Packed,
    StoreRecords,
    StoreRow,
    pack,
    split_key,
    store_key,
)
from cachetui.views import Delta, DetailsView, PlanRow, PrunePlan, ReleaseResult

__all__ = ["FleetService", "parse_store_filter"]

Clock = Callable[[], float]
OnStatus = Callable[[str | None], None]
Notice = Callable[[str, str], None]  # (message, severity)

#: How long an action waits for its agent's result before giving up on the screen.
REQUEST_WAIT = 120.0
#: The reader's raw record rows are in ``FleetRecord``'s order: store, id, then
#: ``pack``'s arguments (parent first), then the version.
_FIELDS = [f.name for f in fields(FleetRecord)]
_ID = _FIELDS.index("id")
_VERSION = _FIELDS.index("version")
assert _FIELDS[_ID + 1 : _VERSION] == list(pack.__code__.co_varnames[: pack.__code__.co_argcount])


def _pack_row(row: Sequence[Any], parent: str | None) -> Packed:
    """A raw record row packed (``parent``: its parent id, maybe a shared string)."""
    return pack(
        parent,
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        sys.intern(row[8]),  # "regular", "source.local", ...: one string each
        row[9],
        row[10],
        row[11],
        row[12],
        row[13],
        row[14],
        row[15],
    )


def parse_store_filter(text: str) -> tuple[list[tuple[str, str]], str]:
    """Split ``store==NAME`` / ``store!=NAME`` / ``store~=RE`` selectors out of a filter.

    Returns the store selectors (operator, value) and the rest of the filter for the
    core's language. Selectors are comma-separated and AND-ed, as in containerd's.
    """
    store_parts: list[tuple[str, str]] = []
    rest: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        for op in ("==", "!=", "~="):
            key, sep, value = part.partition(op)
            if sep and key.strip() == "store":
                if not value.strip():
                    raise FilterSyntaxError(
                        f"store{op} needs a store name", filter_text=text, position=0
                    )
                store_parts.append((op, value.strip().strip('"')))
                break
        else:
            rest.append(part)
    return store_parts, ",".join(rest)


def _store_matches(name: str, selectors: Sequence[tuple[str, str]]) -> bool:
    import re

    for op, value in selectors:
        if op == "==" and name != value:
            return False
        if op == "!=" and name == value:
            return False
        if op == "~=" and re.search(value, name) is None:
            return False
    return True


class FleetService:
    """Blocking, thread-safe operations over a fleet database (call them off the UI)."""

    def __init__(
        self,
        url: str,
        *,
        read_only: bool = False,
        clock: Clock | None = None,
        offline_after: float = OFFLINE_AFTER,
        request_wait: float = REQUEST_WAIT,
        title: str | None = None,
    ) -> None:
        self.url = url
        self.root = title or mask(url)  # what the header shows: never the password
        self.read_only = read_only
        self.read_only_reason: str | None = "--read-only" if read_only else None
        self.clock = clock or time.time
        self.offline_after = offline_after
        self.request_wait = request_wait
        self.on_notice: Notice | None = None
        self._lock = threading.RLock()
        self._reader: FleetReader | None = None
        self._view: FleetView | None = None
        self._infos: dict[str, StoreInfo] = {}
        self._skew = 0.0  # server clock - local monotonic clock, from the last read
        self._records: dict[str, StoreRecords] = {}  # loaded stores, by name
        self._versions: dict[str, int] = {}  # loaded stores: the version last read
        self._pending: dict[str, str] = {}
        self._stale_since: float | None = None
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        self._closing = threading.Event()
        self._on_change: Callable[[ChangeSet], None] | None = None

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def reader(self) -> FleetReader:
        with self._lock:
            if self._reader is None:
                self._reader = FleetReader(self.url)
            return self._reader

    def open(self) -> None:
        self.reader.stores()  # checks the URL, the server and the schema

    def close(self) -> None:
        self._closing.set()
        self.stop_watching()
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def now(self) -> float:
        return float(self.clock())

    @property
    def view(self) -> FleetView | None:
        return self._view

    # -- building the view --------------------------------------------------------------

    def _server_now(self) -> float:
        return time.monotonic() + self._skew

    def _store_row(self, info: StoreInfo) -> StoreRow:
        age = self._server_now() - info.heartbeat_at if info.heartbeat_at else float("inf")
        stopped = info.stopped_at is not None
        online = not stopped and age <= self.offline_after
        if online:
            status, since = "online", None
        elif stopped:
            assert info.stopped_at is not None
            status = f"stopped {format_age(self._server_now() - info.stopped_at)} ago"
            since = info.stopped_at
        elif info.heartbeat_at is None:
            status, since = "offline (never heard from)", None
        else:
            status, since = f"offline for {format_age(age)}", info.heartbeat_at
        return StoreRow(
            key=store_key(info.name),
            name=info.name,
            host=info.host,
            root=info.root,
            agent_version=info.agent_version,
            online=online,
            status=status,
            since=since,
            age=age,
            records=info.records,
            total=info.total,
            reclaimable=info.reclaimable,
            in_use=info.in_use,
            shared=info.shared,
            disk_total=info.disk_total,
            disk_free=info.disk_free,
            last_gc_at=info.last_gc_at,
            last_gc_freed=info.last_gc_freed,
            last_gc_records=info.last_gc_records,
            last_error=info.last_error,
        )

    @staticmethod
    def _placeholder(row: StoreRow) -> RecordState:
        """The store row as a record-shaped value, for the code every row shares (cursor,
        marks, refusals, sorting); the tree draws ``StoreRow`` instead. Its sort fields
        give the stores' orders: "size" sorts by reclaimable bytes, "last used" by free
        disk (least free first), "name" by name."""
        return RecordState(
            id=row.key,
            parent=None,
            mutable=False,
            in_use=False,
            size=row.reclaimable,
            created_at=0.0,
            last_used_at=-row.free_fraction,
            usage_count=row.records,
            description=row.name,
            record_type="store",
            shared=False,
            health="ok",
            held=False,
            holders=(),
            in_use_via=None,
            retain=False,
            pending_commit=False,
            has_children=row.records > 0,
            layer_id="",
            layer_path=row.root,
            refusal="a host: act on its records (expand it with the right arrow)",
        )

    def _read_stores(self) -> None:
        started = time.monotonic()
        infos = self.reader.stores()
        if infos:
            # The server's clock decides who is online (hosts' clocks may be skewed).
            self._skew = infos[0].now - (started + time.monotonic()) / 2
        self._infos = {info.name: info for info in infos}

    def _read_records(self, name: str) -> None:
        """Every record and holder of one store, replacing what was loaded. The rows are
        packed as they stream in (a batch of raw rows at a time, never 10,000 at once);
        a parent id is the same string as its record's id (one copy per record)."""
        info = self._infos.get(name)
        if info is None:
            self._forget(name)
            return
        holders = {k: tuple(v) for k, v in _holders_by_record(self.reader.holders(name)).items()}
        packed: dict[str, Packed] = {}
        same: dict[str, str] = {}  # one string per id: a parent's is its record's
        version: int | None = None
        for row in self.reader.record_stream(name):
            record_id = same.setdefault(row[_ID], row[_ID])
            parent = row[_ID + 1]
            if parent is not None:
                parent = same.setdefault(parent, parent)
            packed[record_id] = _pack_row(row, parent)
            if version is None or row[_VERSION] > version:
                version = row[_VERSION]
        del same
        self._versions[name] = version if version is not None else info.version
        before = self._records.get(name)
        self._records[name] = StoreRecords(
            name, packed, holders, before.refused if before is not None else None
        )

    def _forget(self, name: str) -> None:
        self._records.pop(name, None)

    def _mark_liveness(self, name: str, row: StoreRow) -> None:
        """An offline store's records stay, each refused with the reason; back online,
        each gets its own refusal again. Its records value is replaced only when the
        reason changes (once per outage, not per redraw), sharing everything else."""
        state = "stopped" if row.status.startswith("stopped") else "offline"
        reason = None if row.online else f"host {name} is {state}: no action can reach it"
        loaded = self._records.get(name)
        if loaded is None or loaded.refused == reason:
            return
        self._records[name] = loaded.replaced(refused=reason)

    def _build(self) -> FleetView:
        stores: dict[str, StoreRow] = {}
        placeholders: dict[str, RecordState] = {}
        records: dict[str, StoreRecords] = {}
        unloaded = set()
        for name in sorted(self._infos):
            row = self._store_row(self._infos[name])
            stores[row.key] = row
            placeholders[row.key] = self._placeholder(row)
            loaded = self._records.get(name)
            if loaded is None:
                if row.records:
                    unloaded.add(row.key)
                continue
            self._mark_liveness(name, row)
            records[name] = self._records[name]
        sums = list(stores.values())
        totals = Totals(
            total=sum(s.total for s in sums),
            reclaimable=sum(s.reclaimable for s in sums),
            shared=sum(s.shared for s in sums),
            private=sum(s.total - s.shared for s in sums),
            in_use=sum(s.in_use for s in sums),
            records=sum(s.records for s in sums),
            disk_free=sum(s.disk_free for s in sums),
            disk_total=sum(s.disk_total for s in sums),
        )
        view = FleetView(
            rows=FleetRows(placeholders, records),
            children=FleetChildren(tuple(placeholders), records),
            totals=totals,
            read_only=self.read_only,
            stores=MappingProxyType(stores),
            unloaded=frozenset(unloaded),
            pending=MappingProxyType(dict(self._pending)),
            stale_since=self._stale_since,
        )
        self._view = view
        return view

    # -- loading ------------------------------------------------------------------------

    def load(self) -> FleetView:
        """The stores and the fleet's totals; records only of stores already expanded."""
        with self._lock:
            self._read_stores()
            for name in list(self._records):
                self._read_records(name)
            return self._build()

    def expand(self, key: str) -> Delta:
        """Read one store's records (when its row is first opened)."""
        name, _ = split_key(key)
        with self._lock:
            old = self._view or self._build()
            if name not in self._records:
                self._read_records(name)
            return _diff(old, self._build())

    def apply(self, changes: ChangeSet) -> Delta:
        """Fold notifications in: ``changes.records`` holds ``store:NAME``,
        ``records:NAME``, ``gone:NAME/ID`` and ``request:ID`` tokens; ``metadata``
        re-reads everything (after a reconnect). Only what changed is read and rebuilt:
        the other stores' rows are shared with the view before."""
        with self._lock:
            old = self._view
            if old is None or changes.metadata:
                new = self.load()
                return Delta(new, added=tuple(new.rows)) if old is None else _diff(old, new)
            stores_changed = False
            gone: dict[str, set[str]] = {}
            for token in sorted(changes.records):
                kind, _, arg = token.partition(":")
                if kind == "store":
                    stores_changed = True
                elif kind == "records" and arg in self._records:
                    self._read_changed(arg, holders=f"holders:{arg}" in changes.records)
                elif kind == "gone":
                    gone.setdefault(split_key(arg)[0], set()).add(arg)
                elif kind == "reload" and arg in self._records:
                    self._read_records(arg)
            for name, keys in gone.items():
                loaded = self._records.get(name)
                ids = {split_key(k)[1] for k in keys}
                if loaded is not None and not ids.isdisjoint(loaded.packed):
                    # a new dict: the view before keeps its own
                    kept = {i: p for i, p in loaded.packed.items() if i not in ids}
                    self._records[name] = loaded.replaced(packed=kept, edited=ids)
            if stores_changed or any(t.startswith(("records:", "gone:")) for t in changes.records):
                self._read_stores()
            return _diff(old, self._build())

    def _read_changed(self, name: str, *, holders: bool = True) -> None:
        """The records of a store written since the version already shown; its holders
        only when they changed (``holders``): a size written is one query, not two. When
        only sizes and states changed, the store keeps its tree shape and its subtree
        totals move by the size changes (no pass over its records)."""
        since = self._versions.get(name, 0)
        fresh = list(self.reader.record_stream(name, since_version=since))
        info = self._infos.get(name)
        loaded = self._records.get(name)
        if info is None or not fresh or loaded is None:
            return
        packed = dict(loaded.packed)  # a new dict: the view before keeps its own
        reshaped = False
        resized: dict[str, int] = {}
        for row in fresh:
            record_id = row[_ID]
            parent = row[_ID + 1]
            value = _pack_row(row, parent)
            before = packed.get(record_id)
            if before is None or before[0] != parent:
                reshaped = True
            else:
                resized[record_id] = max(value[SIZE], 0) - max(before[SIZE], 0)
            packed[record_id] = value
        held: dict[str, tuple[HolderInfo, ...]] | None = None
        if holders:
            held = {k: tuple(v) for k, v in _holders_by_record(self.reader.holders(name)).items()}
            if held == loaded.holders:
                held = None  # unchanged: the same value as before
        trees = None
        summed = loaded.summed
        if not reshaped and summed is not None:
            ancestors = StoreRecords(name, packed).ancestor_ids
            trees = summed.resized(resized, ancestors)
        self._records[name] = loaded.replaced(
            packed=packed,
            holders=held,
            reshaped=reshaped,
            trees=trees,
            edited=[r[_ID] for r in fresh],
        )
        self._versions[name] = max([since, *(r[_VERSION] for r in fresh)])

    # -- live ---------------------------------------------------------------------------

    def start_watching(
        self, on_change: Callable[[ChangeSet], None], on_status: OnStatus | None = None
    ) -> None:
        """Listen (``LISTEN``) for the agents' notifications (callbacks come from a thread)."""
        self.stop_watching()
        self._on_change = on_change
        self._stop.clear()
        thread = threading.Thread(
            target=self._watch, args=(on_change, on_status), name="cachetui-fleet", daemon=True
        )
        thread.start()
        self._watcher = thread

    def stop_watching(self) -> None:
        thread, self._watcher = self._watcher, None
        if thread is not None:
            self._stop.set()
            thread.join(5.0)

    def _watch(self, on_change: Callable[[ChangeSet], None], on_status: OnStatus | None) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                listener = Listener(self.url)
            except FleetError as err:
                self._went_stale(str(err), on_change, on_status)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.5
            try:
                if self._stale_since is not None:  # back: re-read what was missed
                    self._stale_since = None
                    if on_status is not None:
                        on_status(None)
                    on_change(ChangeSet(frozenset(), True))
                self._listen(listener, on_change)
            except FleetError as err:
                self._went_stale(str(err), on_change, on_status)
            finally:
                listener.close()

    def _went_stale(
        self, reason: str, on_change: Callable[[ChangeSet], None], on_status: OnStatus | None
    ) -> None:
        # ``reason`` (the driver's words) varies with how the server went away; the screen
        # says what it means, the same every time.
        del reason
        if self._stale_since is None:
            self._stale_since = self.now()
            stamp = time.strftime("%H:%M:%S", time.localtime(self._stale_since))
            if on_status is not None:
                on_status(f"fleet view stale since {stamp}: the fleet database is unreachable")
            on_change(ChangeSet(frozenset({"stale:"}), False))

    def _listen(self, listener: Listener, on_change: Callable[[ChangeSet], None]) -> None:
        while not self._stop.is_set():
            tokens: set[str] = set()
            for note in listener.wait(self._next_deadline()):
                store, kind = note.store, note.kind
                if kind == "records":
                    if note.payload.get("reload"):
                        tokens.add(f"reload:{store}")
                    for record_id in note.payload.get("deleted") or ():
                        tokens.add(f"gone:{store}/{record_id}")
                    tokens.add(f"records:{store}")
                    if note.payload.get("holders", True):
                        tokens.add(f"holders:{store}")
                elif kind in ("store", "gc"):
                    tokens.add(f"store:{store}")
                elif kind == "request":
                    tokens.add(f"request:{note.payload.get('id')}")
            if self._liveness_changed():
                tokens.add("store:")
            if tokens:
                on_change(ChangeSet(frozenset(tokens), False))

    def _next_deadline(self) -> float:
        """Seconds until the next online store would pass its heartbeat limit (max 1 s)."""
        view = self._view
        if view is None:
            return 1.0
        waits = [self.offline_after - s.age for s in view.stores.values() if s.online]
        return max(0.05, min([1.0, *waits]))

    def _liveness_changed(self) -> bool:
        view = self._view
        if view is None:
            return False
        for name, info in self._infos.items():
            shown = view.stores.get(store_key(name))
            if shown is not None and self._store_row(info).online != shown.online:
                return True
        return False

    # -- details and filters ------------------------------------------------------------

    def details(self, key: str) -> DetailsView:
        with self._lock:
            view = self._view or self.load()
            row = view.rows.get(key)
            if row is None:
                raise NotFoundError(f"{key}: not found")
        chain = []
        for ancestor in view.ancestors(key):
            a = view.rows[ancestor]
            if a.record_type != "store":
                chain.append((a.id, a.description, a.size))
        store = view.stores.get(store_key(split_key(key)[0]))
        base = f"{store.root.rstrip('/')}/snapshots/" if store else ""
        lowers = tuple(base + view.rows[a[0]].layer_id for a in chain)
        layer = base + row.layer_id  # on its host: the rows do not carry it (memory)
        upper: str | None
        lower_paths: tuple[str, ...]
        if row.record_type == "store":
            upper, lower_paths = None, ()
        elif row.mutable:
            upper, lower_paths = layer, lowers
        else:
            upper, lower_paths = None, (layer, *lowers)
        # the same totals the row's columns show: a record's from its store's subtree
        # totals (kept between views), a store's as its agent reports them (no walk
        # over its 10,000 records on every update)
        size, count = view.subtree_size(key), view.subtree_count(key)
        return DetailsView(
            record=row,
            chain=tuple(chain),
            upper=upper,
            lowers=lower_paths,
            mine=frozenset(),
            pinned=False,
            subtree_size=size,
            subtree_count=count,
        )

    def check_filter(self, text: str) -> None:
        _stores, rest = parse_store_filter(text)
        if is_expression(rest):
            parse_filters(rest)

    def matching(self, text: str) -> frozenset[str]:
        """The keys a filter matches; ``store==NAME`` picks stores (their rows and, once
        read, their records). Other selectors need records: the stores they name are
        read here (this runs in a worker)."""
        selectors, rest = parse_store_filter(text)
        # Plain words search the ids and descriptions of the records read so far (the
        # core's rule tells them apart); typing a word must not read every store.
        words = search_words(rest) if rest.strip() and not is_expression(rest) else ()
        matcher = parse_filters(rest) if is_expression(rest) else None
        with self._lock:
            view = self._view or self.load()
            names = [s.name for s in view.stores.values() if _store_matches(s.name, selectors)]
            if matcher is not None:
                for name in names:
                    if name not in self._records:
                        self._read_records(name)
                view = self._build()
        found: set[str] = set()
        for name in names:
            skey = store_key(name)
            rows = view.rows
            assert isinstance(rows, FleetRows)
            loaded = rows.records.get(name)
            if loaded is None:
                if matcher is None and not words:
                    found.add(skey)
                continue
            if words:
                # the packed description: no record's whole value is built to search it
                prefix = loaded.prefix
                found.update(
                    prefix + record_id
                    for record_id, value in loaded.packed.items()
                    if all(w in f"{record_id}\n{value[DESCRIPTION]}".casefold() for w in words)
                )
                continue
            if matcher is None:
                found.add(skey)
                found.update(loaded)
                continue
            for key in loaded:
                row = loaded[key]
                fields = usage_fields(
                    id=split_key(key)[1],
                    parents=(split_key(row.parent)[1],) if row.parent else (),
                    description=row.description,
                    record_type=row.record_type,
                    in_use=row.in_use,
                    mutable=row.mutable,
                    shared=row.shared,
                    labels=row.labels,
                    cache_mount=row.cache_mount,
                )
                if matcher.matches(fields):
                    found.add(key)
        return frozenset(found)

    # -- actions: requests to the agents ------------------------------------------------

    def _check_writable(self) -> None:
        if self.read_only:
            raise InvalidError("the dashboard is read-only")

    def _online_store(self, name: str) -> StoreRow:
        with self._lock:
            self._read_stores()
            info = self._infos.get(name)
        if info is None:
            raise FleetError(f"host {name} is no longer in the fleet")
        row = self._store_row(info)
        reason = row.offline_reason()
        if reason is not None:
            raise FleetError(reason)
        return row

    def _changed(self, token: str) -> None:
        """Tell the screen the view changed without a notification (pending marks)."""
        if self._on_change is not None:
            self._on_change(ChangeSet(frozenset({token}), False))

    def _notice(self, message: str, severity: str = "information") -> None:
        if self.on_notice is not None:
            self.on_notice(message, severity)

    def _request(self, key_or_name: str, kind: str, payload: dict[str, Any], label: str) -> Any:
        """Send a request to a store's agent and wait for its result (a worker blocks)."""
        self._check_writable()
        name = split_key(key_or_name)[0]
        self._online_store(name)
        listener = self.reader.listen()  # before submit: no notification can be missed
        marked = [k for k in payload.get("_keys", [key_or_name])]
        payload = {k: v for k, v in payload.items() if k != "_keys"}
        with self._lock:
            for key in marked:
                self._pending[key] = f"{label} sent to {name}"
        self._changed("pending:")
        try:
            request_id = submit(self.reader.db, name, kind, payload)

            def progress(info: RequestInfo) -> None:
                p = info.progress or {}
                done, total = p.get("done"), p.get("total")
                if done is not None:
                    of = f" of {total}" if total else ""
                    self._notice(f"{name}: {label} {done}{of}")

            info = self._wait(name, label, listener, request_id, progress)
        finally:
            listener.close()
            with self._lock:
                for key in marked:
                    self._pending.pop(key, None)
            self._changed("pending:")
        if info.state == "expired":
            raise FleetError(f"host {name} did not take the {label} request in time (expired)")
        if info.state == "failed":
            raise FleetError(f"host {name} refused the {label}: {info.error}")
        return info.result or {}

    def _wait(
        self,
        name: str,
        label: str,
        listener: Listener,
        request_id: int,
        progress: Callable[[RequestInfo], None],
    ) -> RequestInfo:
        """The request's outcome (LISTEN, in slices so closing the dashboard ends it)."""
        deadline = time.monotonic() + self.request_wait
        while True:
            try:
                return wait(self.reader, listener, request_id, on_progress=progress, timeout=1.0)
            except FleetError:
                if self._closing.is_set():
                    raise FleetError(
                        f"the dashboard closed before host {name} answered the {label}"
                    ) from None
                if time.monotonic() > deadline:
                    raise FleetError(
                        f"host {name} has not finished the {label} after "
                        f"{self.request_wait:g}s (request {request_id})"
                    ) from None

    def plan_prune(self, keys: Sequence[str]) -> PrunePlan:
        """What pruning these records would do, from the replica; names the hosts."""
        with self._lock:
            view = self._view or self.load()
        rows: list[PlanRow] = []
        refused: list[tuple[str, str]] = []
        for key in keys:
            row = view.rows.get(key)
            if row is None:
                refused.append((key, "it is no longer in the fleet view"))
            elif row.refusal is not None:
                refused.append((key, row.refusal))
            else:
                rows.append(
                    PlanRow(
                        key, row.description, row.size, row.shared, row.mutable, row.last_used_at
                    )
                )
        return PrunePlan(tuple(rows), tuple(refused))

    def prune_ids(
        self, keys: Sequence[str], on_prune: Callable[[PlanRow], None] | None = None
    ) -> PrunePlan:
        """One request per host, carrying the state the operator confirmed."""
        with self._lock:
            view = self._view or self.load()
        by_store: dict[str, list[str]] = {}
        for key in keys:
            by_store.setdefault(split_key(key)[0], []).append(key)
        removed: list[PlanRow] = []
        refused: list[tuple[str, str]] = []
        gone: list[str] = []
        for name, store_keys in sorted(by_store.items()):
            confirmed = {}
            for key in store_keys:
                row = view.rows.get(key)
                if row is not None:
                    confirmed[split_key(key)[1]] = {
                        "last_used_at": row.last_used_at,
                        "usage_count": row.usage_count,
                        "holders": sum(1 for h in row.holders if h.alive),
                    }
            result = self._request(
                name,
                "prune_ids",
                {
                    "ids": [split_key(k)[1] for k in store_keys],
                    "confirmed": confirmed,
                    "_keys": store_keys,
                },
                "prune",
            )
            for item in result.get("removed", []):
                plan = PlanRow(
                    f"{name}/{item['id']}",
                    item.get("description", ""),
                    int(item.get("size", 0)),
                    bool(item.get("shared", False)),
                    bool(item.get("mutable", False)),
                    item.get("last_used_at"),
                )
                removed.append(plan)
                if on_prune is not None:
                    on_prune(plan)
            refused += [(f"{name}/{i}", why) for i, why in result.get("refused", [])]
            gone += [f"{name}/{i}" for i in result.get("gone", [])]
        return PrunePlan(tuple(removed), tuple(refused), tuple(gone))

    def plan_policy(self, options: PruneOptions, store: str | None = None) -> PrunePlan:
        raise InvalidError("prune by policy on a fleet: use cachetui prune --fleet-url")

    def prune_policy(
        self, options: PruneOptions, on_prune: Callable[[PlanRow], None] | None = None
    ) -> PrunePlan:
        raise InvalidError("prune by policy on a fleet: use cachetui prune --fleet-url")

    def commit(self, key: str) -> str:
        result = self._request(key, "commit", {"id": split_key(key)[1]}, "commit")
        return f"{split_key(key)[0]}/{result.get('committed', '')}"

    def hold(self, key: str) -> str:
        result = self._request(key, "hold", {"id": split_key(key)[1]}, "hold")
        return f"{split_key(key)[0]}/{result.get('id', split_key(key)[1])}"

    def holds(self) -> frozenset[str]:
        return frozenset()

    def release(self, key: str) -> int:
        result = self._request(key, "release", {"id": split_key(key)[1]}, "release")
        return int(result.get("released", 0))

    def force_release(self, key: str, holders: Sequence[HolderInfo]) -> ReleaseResult:
        """Ask the host's agent to drop the holds of the processes the user confirmed."""
        with self._lock:
            view = self._view or self.load()
        row = view.rows.get(key)
        if row is None:
            return ReleaseResult(key, (), (), (), record_gone=True)
        processes = {(h.pid, h.host) for h in holders}
        chosen = [h for h in row.holders if (h.pid, h.host) in processes]
        if not chosen:
            return ReleaseResult(key, (), (), ())
        result = self._request(
            key, "force_release", {"holder_ids": [h.id for h in chosen]}, "force release"
        )
        count = int(result.get("released", 0))
        return ReleaseResult(key, tuple(chosen[:count]), tuple(h.id for h in chosen[count:]), ())


def _holders_by_record(holders: Iterable[FleetHolder]) -> dict[str, list[HolderInfo]]:
    by_record: dict[str, list[HolderInfo]] = {}
    for h in holders:
        by_record.setdefault(h.record, []).append(
            HolderInfo(h.id, h.record, h.pid, h.host, h.created_at, h.alive, True)
        )
    return by_record


def _diff(old: FleetView, new: FleetView) -> Delta:
    """What changed between two views. A store whose records are the same dict in both
    (nothing of it was read) is skipped whole; inside one that changed, a row that is the
    same object is unchanged: a row update costs its store, not the fleet."""
    added: list[str] = []
    removed: list[str] = []
    changed: list[str] = []
    reparented: list[str] = []
    old_rows, new_rows = old.rows, new.rows
    assert isinstance(old_rows, FleetRows) and isinstance(new_rows, FleetRows)
    for key, row in new_rows.stores.items():
        before = old_rows.stores.get(key)
        if before is None:
            added.append(key)
        elif before != row or old.stores.get(key) != new.stores.get(key):
            changed.append(key)
    removed.extend(k for k in old_rows.stores if k not in new_rows.stores)
    for name, records in new_rows.records.items():
        earlier = old_rows.records.get(name)
        if earlier is records:
            continue
        if earlier is None:
            added.extend(records)
            continue
        _diff_store(earlier, records, changed, added, removed, reparented)
    listed = set(changed)
    for key in old.pending.keys() | new.pending.keys():
        if old.pending.get(key) != new.pending.get(key) and key in new_rows and key not in listed:
            changed.append(key)
            listed.add(key)
    if old.stale_since != new.stale_since or old.unloaded != new.unloaded:
        changed.extend(k for k in new.stores if k not in listed)
    return Delta(new, tuple(changed), tuple(added), tuple(removed), tuple(reparented))


def _diff_store(
    old: StoreRecords,
    new: StoreRecords,
    changed: list[str],
    added: list[str],
    removed: list[str],
    reparented: list[str],
) -> None:
    """What changed in one store's records: a record whose packed facts are the same
    tuple is unchanged unless its parent came or went (it moves), its holders changed,
    or the store's refusal did (every record's value changed)."""
    prefix = new.prefix
    before, after = old.packed, new.packed
    if before is not after:
        came: list[str] = []
        edit = new.edit
        # made from these very records (alive, so the id names them): only the edited
        # ids can differ
        edited = edit[1] if edit is not None and edit[0] == id(before) else None
        candidates: Iterable[tuple[str, Packed]]
        if edited is not None:
            candidates = ((i, after[i]) for i in sorted(edited) if i in after)
        else:
            candidates = after.items()
        for record_id, value in candidates:
            was = before.get(record_id)
            if was is value:
                continue
            if was is None:
                came.append(record_id)
            elif old.parent_id(was) != new.parent_id(value):
                reparented.append(prefix + record_id)
            elif was != value:
                changed.append(prefix + record_id)
        # every record of ``after`` is in ``before`` or came: equal counts, none went
        if len(after) == len(before) + len(came):
            gone = []
        else:
            maybe = sorted(edited) if edited is not None else before
            gone = [i for i in maybe if i in before and i not in after]
        removed.extend(prefix + i for i in gone)
        added.extend(prefix + i for i in came)
        moved = {*gone, *came}
        if moved:  # a record whose parent came or went is now under another row
            listed = {prefix + i for i in came}
            listed.update(reparented)
            for record_id, value in after.items():
                parent = value[0]
                if parent in moved and before.get(record_id) is value:
                    key = prefix + record_id
                    if key not in listed and old.parent_id(value) != new.parent_id(value):
                        reparented.append(key)
    if old.refused != new.refused:
        listed = set(changed) | set(reparented)
        changed.extend(k for k in new if k not in listed and k[len(prefix) :] in before)
    elif old.holders is not new.holders:
        listed = set(changed) | set(reparented)
        for record_id in old.holders.keys() | new.holders.keys():
            key = prefix + record_id
            if (
                record_id in after
                and record_id in before
                and key not in listed
                and old.holders.get(record_id, ()) != new.holders.get(record_id, ())
            ):
                changed.append(key)
