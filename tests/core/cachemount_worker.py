"""A second process for the cache-mount tests: ``python cachemount_worker.py ROOT ID MODE``.

It acquires the cache mount (waiting as its mode says), prints one JSON line with the
record id it got (or the error), then holds it until a line arrives on stdin.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cachetui.core import CacheManager, LockedError


def main() -> int:
    root, cache_id, mode = sys.argv[1:4]
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else None
    with CacheManager.open(root) as cm:
        try:
            ref = cm.get_cache_mount(cache_id, target="/root/.m2", sharing=mode, timeout=timeout)
        except LockedError as err:
            print(json.dumps({"error": str(err)}), flush=True)
            return 3
        (ref.mount().upper / f"from-{mode}").write_bytes(b"x")
        print(json.dumps({"id": ref.id}), flush=True)
        sys.stdin.readline()
        ref.release()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
