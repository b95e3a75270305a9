"""``python -m cachetui.demo``: build a demo store, or run the simulated build.

``start_simulator`` runs ``python -m cachetui.demo simulate`` in a new process; ``build``
is for scripts and tests that want a demo store without the dashboard.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from cachetui.demo.simulator import run_simulator
from cachetui.demo.store import build_demo_store

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cachetui.demo")
    subs = parser.add_subparsers(dest="command", required=True)
    build = subs.add_parser("build", help="build a demo store")
    build.add_argument("--root", required=True)
    build.add_argument("--seed", type=int, default=7)
    sim = subs.add_parser("simulate", help="run the live simulated build")
    sim.add_argument("--root", required=True)
    sim.add_argument("--steps", type=int, default=None)
    sim.add_argument("--interval", type=float, default=0.5)
    sim.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    if args.command == "build":
        build_demo_store(Path(args.root), seed=args.seed)
        return 0
    run_simulator(Path(args.root), steps=args.steps, interval=args.interval, seed=args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
