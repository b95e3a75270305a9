"""The command line in an operator's words: labels and cache mounts in ``du``, and
invocations shaped like the examples of ``docker buildx du`` / ``docker buildx prune``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from cachetui.core import CacheManager, CacheMount
from tests.cli.test_cli import run
from tests.conftest import FakeClock, write_file

DAY = 86400.0


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Three cache mounts at /root/.m2 told apart by cache id, two labelled layers, one
    sparse layer; ages relative to now."""
    root = tmp_path / "store"
    clock = FakeClock(time.time() - 10 * DAY)
    ids: dict[str, str] = {}
    with CacheManager.open(root, clock=clock) as cm:
        for project, mode in [("api", "locked"), ("web", "private"), ("cli", "shared")]:
            ref = cm.new(
                description="cached mount /root/.m2 from exec mvn package",
                record_type="exec.cachemount",
                retain=True,
                cache_mount=CacheMount(f"{project}-m2", "/root/.m2", mode),
                labels={"project": project},
            )
            write_file(ref.mount().upper, "repo.jar", 30_000)
            ref.release()
            ids[project] = ref.id
        clock.advance(8 * DAY)  # two days ago
        for team in ("infra", "web"):
            ref = cm.new(description=f"[{team} 2/3] RUN make", labels={"team": team}, retain=True)
            write_file(ref.mount().upper, "out", 12_000)
            ref.release()
            ids[f"team-{team}"] = ref.id
        clock.advance(2 * DAY - 600)  # ten minutes ago
        ref = cm.new(description="sparse", retain=True)
        with open(ref.mount().upper / "disk.img", "wb") as fh:
            fh.truncate(50 << 20)
        ref.release()
        ids["sparse"] = ref.id
    return root, ids


def _json(stdout: str) -> dict[str, dict[str, object]]:
    objects = [json.loads(line) for line in stdout.splitlines()]
    return {str(o.get("id", o.get("ID"))): o for o in objects}


def test_du_json_carries_labels_cache_mount_and_apparent_size(store) -> None:  # type: ignore[no-untyped-def]
    root, ids = store
    result = run("du", "--root", str(root), "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = _json(result.stdout)
    assert rows[ids["api"]]["cache_mount"] == {
        "cache_id": "api-m2",
        "target": "/root/.m2",
        "sharing": "locked",
    }
    assert rows[ids["api"]]["labels"] == {"project": "api"}
    assert rows[ids["team-infra"]]["labels"] == {"team": "infra"}
    assert rows[ids["team-infra"]]["cache_mount"] is None
    sparse = rows[ids["sparse"]]
    assert isinstance(sparse["apparent_size"], int) and isinstance(sparse["size"], int)
    assert sparse["apparent_size"] > 50 << 20 > sparse["size"]


def test_du_verbose_shows_labels_and_cache_mount(store) -> None:  # type: ignore[no-untyped-def]
    root, ids = store
    result = run("du", "--root", str(root), "--verbose")
    assert result.returncode == 0, result.stderr
    blocks = {b.splitlines()[0].split()[-1]: b for b in result.stdout.split("\n\n") if b}
    api = blocks[ids["api"]]
    assert "Cache id:" in api and "api-m2" in api
    assert "Target:" in api and "/root/.m2" in api
    assert "Sharing:" in api and "locked" in api
    assert "Labels:\n - project=api" in api
    assert "Apparent size:" in blocks[ids["sparse"]]


def test_du_filters_on_cache_id_sharing_and_labels(store) -> None:  # type: ignore[no-untyped-def]
    root, ids = store
    for text, expected in [
        ("cache-id==web-m2", {"web"}),
        ("sharing==locked", {"api"}),
        ("label.team==infra", {"team-infra"}),
        ("label.project", {"api", "web", "cli"}),
    ]:
        result = run("du", "--root", str(root), "--filter", text, "--format", "json")
        assert result.returncode == 0, result.stderr
        assert set(_json(result.stdout)) == {ids[name] for name in expected}, text


def test_prune_only_one_teams_cache(store) -> None:  # type: ignore[no-untyped-def]
    root, ids = store
    result = run("prune", "--root", str(root), "--force", "--filter", "label.team==infra")
    assert result.returncode == 0, result.stderr
    assert ids["team-infra"] in result.stdout
    with CacheManager.open(root) as cm:
        left = {r.id for r in cm.disk_usage()}
    assert ids["team-infra"] not in left
    assert {ids["team-web"], ids["web"], ids["api"], ids["sparse"]} <= left
