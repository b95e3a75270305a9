"""Prometheus metrics of one store, in the text exposition format (``prometheus-client``).

Everything is read from the store at scrape time, so ``cachetui metrics`` in another
process and the ``gc --watch`` endpoint report the same numbers:

* ``cachetui_records`` and ``cachetui_bytes`` by record ``type`` and ``state``
  (``in_use`` or ``reclaimable``);
* ``cachetui_reclaimable_bytes``, ``cachetui_disk_free_bytes``,
  ``cachetui_disk_total_bytes``;
* from the GC history: ``cachetui_gc_runs_total``, ``cachetui_gc_removed_records_total``,
  ``cachetui_gc_removed_bytes_total``, ``cachetui_gc_run_duration_seconds`` (a summary:
  count and sum) and ``cachetui_gc_last_run_timestamp_seconds``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

__all__ = ["StoreCollector", "registry_for", "render", "serve"]


class StoreCollector(Collector):
    """Collects the metrics of the store at ``root`` (opened read-only per scrape)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        from cachetui.core import CacheManager

        with self._lock, CacheManager.open(self.root, read_only=True) as cm:
            rows = cm.disk_usage()
            summary = cm.totals(rows)
            runs = cm.gc_totals()
        records = GaugeMetricFamily(
            "cachetui_records", "Cache records by type and state", labels=["type", "state"]
        )
        sizes = GaugeMetricFamily(
            "cachetui_bytes", "Bytes of cache records by type and state", labels=["type", "state"]
        )
        counts: dict[tuple[str, str], tuple[int, int]] = {}
        for row in rows:
            key = (row.record_type or "regular", "in_use" if row.in_use else "reclaimable")
            n, b = counts.get(key, (0, 0))
            counts[key] = (n + 1, b + max(row.size, 0))
        for (kind, state), (n, b) in sorted(counts.items()):
            records.add_metric([kind, state], n)
            sizes.add_metric([kind, state], b)
        yield records
        yield sizes
        yield GaugeMetricFamily(
            "cachetui_reclaimable_bytes",
            "Bytes of records no process uses",
            value=summary.reclaimable,
        )
        yield GaugeMetricFamily(
            "cachetui_disk_free_bytes",
            "Free bytes on the filesystem holding the store",
            value=summary.disk_free,
        )
        yield GaugeMetricFamily(
            "cachetui_disk_total_bytes",
            "Size of the filesystem holding the store",
            value=summary.disk_total,
        )
        # Summed over every run ever recorded (the history keeps only the newest):
        # a counter never goes down.
        yield CounterMetricFamily("cachetui_gc_runs", "GC runs recorded", value=runs.runs)
        yield CounterMetricFamily(
            "cachetui_gc_removed_records", "Records removed by GC runs", value=runs.records
        )
        yield CounterMetricFamily(
            "cachetui_gc_removed_bytes", "Bytes removed by GC runs", value=runs.bytes
        )
        yield SummaryMetricFamily(
            "cachetui_gc_run_duration_seconds",
            "Duration of GC runs",
            count_value=runs.runs,
            sum_value=runs.duration,
        )
        yield GaugeMetricFamily(
            "cachetui_gc_last_run_timestamp_seconds",
            "When the last GC run started (Unix seconds; 0 if none)",
            value=runs.last_started_at,
        )


def registry_for(root: Path) -> CollectorRegistry:
    """A registry holding only this store's collector (no process or platform metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(root))
    return registry


def render(root: Path) -> str:
    """The store's metrics in Prometheus' text format."""
    return generate_latest(registry_for(root)).decode("utf-8")


def serve(root: Path, port: int) -> tuple[object, threading.Thread]:
    """Serve the store's metrics on ``127.0.0.1:port`` from a daemon thread; returns
    prometheus-client's (server, thread)."""
    return start_http_server(port, addr="127.0.0.1", registry=registry_for(root))
