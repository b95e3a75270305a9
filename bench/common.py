"""Helpers shared by the benchmarks: timing and building large stores quickly."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from cachetui.core import CacheManager, new_id


def best_of(runs: int, action: Callable[[], object]) -> float:
    """The best wall time of ``runs`` calls, in seconds."""
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def build_flat_store(
    root: Path,
    count: int,
    *,
    now: float | None = None,
    chain_length: int = 10,
    file_bytes: int = 0,
) -> list[str]:
    """``count`` finalized, released records with cached sizes, written in bulk.

    The manager creates the schema; rows and empty layer directories are then added
    directly (the API path costs a transaction per record, which is not what is measured).
    """
    CacheManager.open(root).close()
    now = now or time.time()
    ids = [new_id() for _ in range(count)]
    snapshots = root / "snapshots"
    for rid in ids:
        os.mkdir(snapshots / rid)
        if file_bytes:
            with open(snapshots / rid / "file", "wb") as fh:
                fh.write(b"f" * file_bytes)
    con = sqlite3.connect(root / "metadata.db")
    rows = []
    for index, rid in enumerate(ids):
        parent = ids[index - 1] if chain_length > 1 and index % chain_length else None
        rows.append(
            (
                rid,
                parent,
                0,
                None,
                1,
                f"[stage {index % 7}/7] RUN step {index}",
                "regular",
                now - index,
                now - index / 2,
                index % 13,
                4096 * (1 + index % 50),
                0,
                0,
                0,  # apparent size: the layers are empty
            )
        )
    con.executemany(
        "INSERT INTO record (id, parent, mutable, equal_mutable, retain, description, "
        "record_type, created_at, last_used_at, usage_count, size, deleted, pending_use, "
        "apparent_size) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
    con.commit()
    con.close()
    return ids
