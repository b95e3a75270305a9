"""Benchmark: opening a store of 100,000 records, and ``disk_usage()`` over them.

Compared in the same run with plain ``sqlite3`` reading the same 100,000 rows.
Goals (issues #2 and #3): open under 0.5 s; disk_usage with cached sizes under 0.5 s.

    python bench/bench_store.py [--records 100000]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import best_of, build_flat_store

from cachetui.core import CacheManager


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=Path.home()) as tmp:
        root = Path(tmp) / "store"
        build_flat_store(root, args.records)

        def plain_sqlite() -> None:
            con = sqlite3.connect(root / "metadata.db")
            con.execute("SELECT * FROM record").fetchall()
            con.close()

        def open_store() -> None:
            CacheManager.open(root).close()

        cm = CacheManager.open(root)

        def usage() -> None:
            cm.disk_usage()

        assert len(cm.disk_usage()) == args.records
        peer = best_of(3, plain_sqlite)
        opened = best_of(3, open_store)
        du = best_of(3, usage)
        cm.close()
    print(f"records: {args.records:,}")
    print(f"plain sqlite3 read of all rows : {peer:.3f} s")
    print(
        f"CacheManager.open (reconcile)  : {opened:.3f} s  ({opened / peer:.2f}x sqlite3)"
        f"  goal < 0.5 s"
    )
    print(f"disk_usage() with cached sizes : {du:.3f} s  ({du / peer:.2f}x sqlite3)  goal < 0.5 s")


if __name__ == "__main__":
    main()
