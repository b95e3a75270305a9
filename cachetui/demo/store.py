"""A demo store that looks like a real BuildKit cache.

``build_demo_store`` fills a root with build chains sharing base layers, dependency
layers, cache mounts, local sources and a frontend and an internal record, with usage
spread over the past 60 days. It is deterministic for a given ``seed`` and ``clock``
(record ids are random, everything else is not), and small (about 6 MB of files).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cachetui.core import CacheManager, MutableRef

__all__ = ["build_demo_store"]

_DAY = 86400.0
_KB = 1024


class _DemoClock:
    """A clock the builder moves by hand; it starts 60 days before ``now``."""

    def __init__(self, now: float) -> None:
        self.end = now
        self.now = now - 60 * _DAY

    def __call__(self) -> float:
        return self.now

    def at_days_ago(self, days: float) -> None:
        self.now = max(self.now, self.end - days * _DAY)


def _fill(directory: Path, files: Sequence[tuple[str, int]], rng: random.Random) -> None:
    """Write ``files`` (relative path, size) with seeded, incompressible-looking bytes."""
    for name, size in files:
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))


def _rootfs(prefix: str, total_kb: int, rng: random.Random) -> list[tuple[str, int]]:
    names = ["usr/bin", "usr/lib/x86_64-linux-gnu", "etc", "var/lib/dpkg", "usr/share/doc"]
    files = []
    remaining = total_kb * _KB
    i = 0
    while remaining > 0:
        size = min(remaining, rng.randint(8, 96) * _KB)
        files.append((f"{names[i % len(names)]}/{prefix}{i:03d}", size))
        remaining -= size
        i += 1
    return files


class _Builder:
    def __init__(self, cm: CacheManager, clock: _DemoClock, rng: random.Random) -> None:
        self.cm = cm
        self.clock = clock
        self.rng = rng

    def layer(
        self,
        parent: str | None,
        description: str,
        size_kb: int,
        *,
        days_ago: float,
        record_type: str = "regular",
        prefix: str = "f",
    ) -> str:
        """A committed, finalized, retained layer on ``parent``, created ``days_ago``.

        Building on a parent holds it for the build, which counts as a use of it."""
        self.clock.at_days_ago(days_ago)
        base = self.cm.get(parent) if parent is not None else None
        try:
            mutable = self.cm.new(base, description=description, record_type=record_type)
            upper = mutable.mount().upper
            assert upper is not None
            _fill(upper, _rootfs(prefix, size_kb, self.rng), self.rng)
            ref = mutable.commit()
            ref.finalize()
            ref.set_retain(True)
            ref.release()
        finally:
            if base is not None:
                base.release()
        return ref.id

    def mutable(
        self, description: str, files: Sequence[tuple[str, int]], *, days_ago: float, kind: str
    ) -> str:
        """A retained mutable record (a cache mount or a local source), released."""
        self.clock.at_days_ago(days_ago)
        ref: MutableRef = self.cm.new(description=description, record_type=kind, retain=True)
        upper = ref.mount().upper
        assert upper is not None
        _fill(upper, files, self.rng)
        ref.release()
        return ref.id

    def use(self, days_ago: float, *record_ids: str) -> None:
        """Use each record once (get and release) ``days_ago``."""
        self.clock.at_days_ago(days_ago)
        for record_id in record_ids:
            self.clock.now += self.rng.uniform(1, 90)
            self.cm.get(record_id).release()

    def use_mutable(self, days_ago: float, record_id: str, grow_kb: int = 0) -> None:
        """Hold a mutable record for a build step (a cache mount, a local source)."""
        self.clock.at_days_ago(days_ago)
        self.clock.now += self.rng.uniform(1, 90)
        ref = self.cm.get_mutable(record_id)
        if grow_kb:
            upper = ref.mount().upper
            assert upper is not None
            name = f"grow/{int(self.clock.now)}"
            _fill(upper, [(name, grow_kb * _KB)], self.rng)
        ref.release()


def build_demo_store(
    root: Path, *, clock: Callable[[], float] | None = None, seed: int = 7
) -> None:
    """Fill ``root`` (created if missing) with a realistic demo cache.

    Times are spread over the 60 days before ``clock()`` (read once); the same ``seed``
    and clock give the same descriptions, sizes, types, times and usage counts.
    """
    end = float((clock or time.time)())
    demo_clock = _DemoClock(end)
    rng = random.Random(seed)
    with CacheManager.open(root, clock=demo_clock) as cm:
        _build(_Builder(cm, demo_clock, rng))


_ALPINE = (
    "pulled from docker.io/library/alpine:3.19@sha256:"
    "c5b1261d6d3e43071626931fc004f70149baeba2c8ec672bd4f27761f8e1ad6b"
)
_DEBIAN = (
    "pulled from docker.io/library/debian:bookworm@sha256:"
    "b8084b1a576c5504a031936e1132574f4ce1d6cc7130bf8e0b9bf1e2ee5e2b34"
)
_DOCKERFILE_FRONTEND = (
    "pulled from docker.io/docker/dockerfile:1.7@sha256:"
    "a57df69d0ea827fb7266491f2813635de6f17269be881f696fbfdf2d83dda33e"
)
_APT_PYTHON = (
    "mount / from exec /bin/sh -c apt-get update && apt-get install -y "
    "--no-install-recommends python3 python3-pip python3-venv"
)


def _build(b: _Builder) -> None:
    """The demo's history, in time order (the clock only moves forward)."""
    # 58 days ago: an old alpine-based tool image, never used again.
    alpine = b.layer(None, _ALPINE, 380, days_ago=58, prefix="apk")
    apk = b.layer(alpine, "[2/3] RUN apk add --no-cache git openssh-client", 260, days_ago=58)
    b.layer(apk, "[3/3] COPY entrypoint.sh /usr/local/bin/", 12, days_ago=57.9)

    # 45 days ago: the Python web app on debian:bookworm.
    frontend = b.layer(
        None, _DOCKERFILE_FRONTEND, 90, days_ago=45, record_type="frontend", prefix="fe"
    )
    internal = b.layer(
        None,
        "[internal] load build definition from Dockerfile",
        4,
        days_ago=45,
        record_type="internal",
    )
    dockerfile = b.mutable(
        "local source for dockerfile", [("Dockerfile", 2 * _KB)], days_ago=45, kind="source.local"
    )
    context = b.mutable(
        "local source for context",
        [("app/main.py", 14 * _KB), ("app/models.py", 22 * _KB), ("requirements.txt", _KB)],
        days_ago=45,
        kind="source.local",
    )
    debian = b.layer(None, _DEBIAN, 1600, days_ago=45, prefix="deb")
    apt = b.layer(debian, _APT_PYTHON, 640, days_ago=45)
    workdir = b.layer(apt, "[stage-1 2/5] WORKDIR /app", 1, days_ago=44.9)
    reqs = b.layer(workdir, "[stage-1 3/5] COPY requirements.txt .", 1, days_ago=44.9)
    pip_cache = b.mutable(
        "cached mount /root/.cache/pip from exec /bin/sh -c pip install -r requirements.txt",
        [(f"http-v2/{i:x}/body", 48 * _KB) for i in range(8)],
        days_ago=44.9,
        kind="exec.cachemount",
    )
    pip = b.layer(reqs, "[stage-1 4/5] RUN pip install -r requirements.txt", 820, days_ago=44.8)
    b.layer(pip, "[stage-1 5/5] COPY . .", 180, days_ago=44.8)

    # 30 days ago: the node frontend, on the same debian base.
    b.use(30, frontend, internal)
    node = b.layer(
        debian, "[build 2/6] RUN apt-get update && apt-get install -y nodejs npm", 560, days_ago=30
    )
    pkg = b.layer(node, "[build 3/6] COPY package.json package-lock.json ./", 2, days_ago=30)
    npm_cache = b.mutable(
        "cached mount /root/.npm from exec /bin/sh -c npm ci",
        [(f"_cacache/content-v2/sha512/{i:02x}", 40 * _KB) for i in range(10)],
        days_ago=30,
        kind="exec.cachemount",
    )
    npm_ci = b.layer(pkg, "[build 4/6] RUN npm ci", 700, days_ago=29.9)
    ui_src = b.layer(npm_ci, "[build 5/6] COPY . .", 96, days_ago=29.9)
    b.layer(ui_src, "[build 6/6] RUN npm run build", 300, days_ago=29.9)

    # 21 days ago: the web app's source changed; its dependencies come from the cache.
    b.use(21, frontend, internal, debian, apt, workdir, reqs)
    b.use_mutable(21, dockerfile)
    b.use_mutable(21, context, grow_kb=4)
    b.use_mutable(21, pip_cache, grow_kb=32)
    app_v2 = b.layer(pip, "[stage-1 5/5] COPY . .", 184, days_ago=21)

    # 14 days ago: a new frontend build.
    b.use(14, frontend, debian, node, pkg)
    b.use_mutable(14, npm_cache, grow_kb=16)
    ui_src2 = b.layer(npm_ci, "[build 5/6] COPY . .", 98, days_ago=14)
    ui_dist2 = b.layer(ui_src2, "[build 6/6] RUN npm run build", 310, days_ago=14)

    # Fully cached web app builds, more and more often.
    for days in (7, 3, 1):
        b.use(days, frontend, debian, apt, workdir, reqs, pip, app_v2)
        b.use_mutable(days, context)
    b.use_mutable(7, pip_cache, grow_kb=8)
    b.use(2, frontend, npm_ci, ui_dist2)
    b.use_mutable(2, npm_cache)
    b.use(0.2, frontend, internal, debian, apt, workdir, reqs, pip, app_v2)
    b.use_mutable(0.2, dockerfile)
    b.use_mutable(0.2, context, grow_kb=2)

    # Half an hour ago: a build step interrupted, its retained layer never committed.
    b.clock.at_days_ago(0.02)
    base = b.cm.get(app_v2)
    try:
        partial = b.cm.new(
            base, description="[stage-1 6/6] RUN python -m compileall /app", retain=True
        )
        upper = partial.mount().upper
        assert upper is not None
        _fill(upper, [("app/__pycache__/main.cpython-311.pyc", 18 * _KB)], b.rng)
        partial.release()
    finally:
        base.release()
