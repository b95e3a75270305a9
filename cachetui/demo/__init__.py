"""The demo: a store that looks like a real BuildKit cache, and a build that keeps running.

:mod:`cachetui.demo.store` builds the store; :mod:`cachetui.demo.simulator` runs the
simulated build in its own process; ``python -m cachetui.demo`` (:mod:`__main__`) is the
command line for both.
"""

from cachetui.demo.simulator import (
    SIMULATOR_DESCRIPTION_PREFIX,
    run_simulator,
    start_simulator,
    stop_simulator,
)
from cachetui.demo.store import build_demo_store

__all__ = [
    "SIMULATOR_DESCRIPTION_PREFIX",
    "build_demo_store",
    "run_simulator",
    "start_simulator",
    "stop_simulator",
]
