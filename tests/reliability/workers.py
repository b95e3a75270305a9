"""Subprocess scripts for the reliability tests: ``python workers.py <command> <root> ...``.

Each command opens the store itself (a real, separate process: its own SQLite
connection, its own holders). Commands print one JSON line per event on stdout so the
parent can follow them; ``wait`` steps read one line from stdin, so a parent can keep the
child blocked at a known point and then release it, or kill it there with SIGKILL.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cachetui.core import CacheManager, PruneOptions
from cachetui.core.errors import LockedError, NotFoundError, StoreError

HERE = Path(__file__).resolve()


def emit(**event: object) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def wait() -> None:
    sys.stdin.readline()


def fill(path: Path, name: str = "data", size: int = 8192) -> None:
    (path / name).write_bytes(b"x" * size)


# -- one operation per crash test ------------------------------------------------------


def op_prepare(cm: CacheManager, args: list[str]) -> None:
    base = cm.get(args[0]) if args else None
    ref = cm.new(base, description="crash-prepare")
    emit(event="made", id=ref.id)


def op_commit(cm: CacheManager, args: list[str]) -> None:
    ref = cm.new(description="crash-commit")
    fill(ref.mount().upper)
    emit(event="made", id=ref.id)
    committed = ref.commit()
    emit(event="committed", id=committed.id)


def op_finalize(cm: CacheManager, args: list[str]) -> None:
    ref = cm.new(description="crash-finalize")
    fill(ref.mount().upper)
    committed = ref.commit()
    emit(event="committed", id=committed.id, mutable=ref.id)
    committed.finalize()
    emit(event="finalized", id=committed.id)


def op_release(cm: CacheManager, args: list[str]) -> None:
    ref = cm.new(description="crash-release")
    fill(ref.mount().upper)
    emit(event="made", id=ref.id)
    ref.release()  # an unretained mutable: removed at release
    emit(event="released", id=ref.id)


def op_prune(cm: CacheManager, args: list[str]) -> None:
    def on_prune(info: object) -> None:
        emit(event="pruned", id=info.id)  # type: ignore[attr-defined]

    cm.prune(PruneOptions(all=True), on_prune=on_prune)
    emit(event="done")


def op_prune_blocking(cm: CacheManager, args: list[str]) -> None:
    """Prune, stopping (for a SIGKILL) after the first removed record."""

    def on_prune(info: object) -> None:
        emit(event="pruned", id=info.id)  # type: ignore[attr-defined]
        wait()

    cm.prune(PruneOptions(all=True), on_prune=on_prune)
    emit(event="done")


def op_prune_mid_rmtree(cm: CacheManager, args: list[str]) -> None:
    """Prune, blocking inside the remover after ``args[0]`` unlinks (the test SIGKILLs it)."""
    limit = int(args[0])
    real_unlink = os.unlink
    count = 0

    def unlink(path, *a, **kw):  # type: ignore[no-untyped-def]
        nonlocal count
        count += 1
        if count == limit:
            emit(event="mid-rmtree")
            wait()
        return real_unlink(path, *a, **kw)

    os.unlink = unlink  # type: ignore[assignment]
    cm.prune(PruneOptions(all=True))
    emit(event="done")


def op_hold(cm: CacheManager, args: list[str]) -> None:
    """Hold ``args[0]`` until told, then check its layer (and chain) still exist."""
    ref = cm.get(args[0])
    mount = ref.mount()
    emit(event="holding", id=ref.id, lowers=[str(p) for p in mount.lowers])
    wait()
    ok = all(p.is_dir() for p in mount.lowers)
    emit(event="checked", ok=ok)
    ref.release()


def op_new_held(cm: CacheManager, args: list[str]) -> None:
    """Create retain / non-retain mutables and die holding them."""
    keep = cm.new(description="retained", retain=True)
    fill(keep.mount().upper)
    drop = cm.new(description="not-retained")
    fill(drop.mount().upper)
    emit(event="made", retained=keep.id, dropped=drop.id)
    wait()


def op_get_loop(cm: CacheManager, args: list[str]) -> None:
    """On each line from stdin (an id), try ``get`` and check the layer while held."""
    for line in sys.stdin:
        rid = line.strip()
        if not rid:
            break
        try:
            ref = cm.get(rid)
        except (NotFoundError, LockedError):
            emit(event="missed", id=rid)
            continue
        time.sleep(0.002)
        ok = all(p.is_dir() for p in ref.mount().lowers)
        ref.release()
        emit(event="got", id=rid, ok=ok)


def op_prune_once(cm: CacheManager, args: list[str]) -> None:
    """Wait for the go line, prune everything, report what this process removed."""
    emit(event="ready")
    wait()
    removed = [info.id for info in cm.prune(PruneOptions(all=True))]
    emit(event="removed", ids=removed)


def op_stress(cm: CacheManager, args: list[str]) -> None:
    """Create, commit, finalize, hold, release and prune ``args[0]`` refs."""
    count, seed = int(args[0]), int(args[1])
    rng = random.Random(seed)
    base = cm.new(description=f"stress-base-{seed}")
    fill(base.mount().upper, "base", 4096)
    held = base.commit()
    held.finalize()
    emit(event="holding", id=held.id)
    held_dir = cm.snapshots.path(held.id)
    errors: list[str] = []
    made = 0
    recent: list[str] = []
    while made < count:
        try:
            parent = held if rng.random() < 0.3 else None
            ref = cm.new(parent, description="stress")
            made += 1
            fill(ref.mount().upper, "f", 512)
            roll = rng.random()
            if roll < 0.5:
                committed = ref.commit()
                if rng.random() < 0.5:
                    committed.finalize()
                recent.append(committed.id)
                committed.release()
            elif roll < 0.8:
                ref.release()
            else:
                ref.set_retain(True)
                recent.append(ref.id)
                ref.release()
            if recent and rng.random() < 0.1:
                try:
                    cm.get(rng.choice(recent)).release()
                except (NotFoundError, LockedError):
                    pass
            if made % 250 == 0:
                cm.prune(PruneOptions(all=True))
                recent.clear()
        except StoreError as err:  # "database is locked" must never escape
            errors.append(str(err))
            break
    ok = held_dir.is_dir() and (held_dir / "base").is_file()
    held.release()
    emit(event="done", made=made, errors=errors, held_ok=ok)


# -- parent-side helpers -----------------------------------------------------------------


def child_env(crash_at: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CACHETUI_CRASH_AT", None)
    if crash_at is not None:
        env["CACHETUI_CRASH_AT"] = crash_at
    return env


def op_build_loop(cm: CacheManager, args: list[str]) -> None:
    """Create ``args[0]`` finalized records (every third on top of the previous one),
    announcing each once it is finalized and released: a build racing a doctor."""
    previous = None
    for i in range(int(args[0])):
        ref = cm.new(previous if i % 3 else None, description=f"build-{i}")
        fill(ref.mount().upper, "out", 2048)
        imm = ref.commit()
        imm.finalize()
        emit(event="finalized", id=imm.id)
        if previous is not None:
            previous.release()
        previous = imm
    if previous is not None:
        previous.release()
    emit(event="done")


def op_doctor_fix(cm: CacheManager, args: list[str]) -> None:
    """Run ``doctor(fix=True)`` ``args[0]`` times, reporting what it moved."""
    for _ in range(int(args[0])):
        for finding in cm.doctor(fix=True):
            if finding.kind == "unknown-dir" and finding.fixed:
                emit(event="moved", id=finding.subject)
    emit(event="done")


def op_dump_times(cm: CacheManager, args: list[str]) -> None:
    """The timestamps as this process (with its own TZ) sees them."""
    for info in cm.disk_usage():
        emit(id=info.id, created=info.created_at.isoformat(), ts=info.created_at.timestamp())


OPS = {name[3:].replace("_", "-"): fn for name, fn in globals().items() if name.startswith("op_")}


def main() -> int:
    command, root, *args = sys.argv[1:]
    with CacheManager.open(root) as cm:
        OPS[command](cm, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
