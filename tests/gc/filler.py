"""A second process that keeps filling a store: ``python -m tests.gc.filler ROOT N SIZE``.

Creates N records one after another (each a finished layer of SIZE bytes, used once),
printing ``done`` at the end. Used by the ``gc --watch`` tests as the build that never
stops writing.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cachetui.core import CacheManager


def main() -> None:
    root, count, size = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    with CacheManager.open(root) as cm:
        for i in range(count):
            with cm.new(description=f"filler {i}") as layer:
                (layer.mount().upper / "data").write_bytes(b"x" * size)
                ref = layer.commit()
            ref.finalize()
            ref.release()
            time.sleep(0.005)
    print("done", flush=True)


if __name__ == "__main__":
    main()
