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


# -- buildx-shaped invocations (from the examples of docker buildx du / prune) -----------


def _ids_out(stdout: str) -> set[str]:
    return {line.split()[0].rstrip("*") for line in stdout.splitlines()[1:] if line.strip()}


def test_du_format_template_prints_one_line_per_record(store) -> None:  # type: ignore[no-untyped-def]
    root, ids = store
    # docker buildx du --format '{{.ID}}\t{{.Size}}' (a literal \t is a tab, as in docker)
    result = run("du", "--root", str(root), "--format", "{{.ID}}\\t{{.Size}}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(ids)
    by_id = dict(line.split("\t") for line in lines)
    assert set(by_id) == set(ids.values())  # no '*' marks outside a table
    assert by_id[ids["api"]].endswith("kB")
    result = run("du", "--root", str(root), "--format", "{{.ID}}: {{json .Labels}}")
    assert f'{ids["team-infra"]}: "team=infra"' in result.stdout.splitlines()


def test_du_format_table_template_has_headers_and_marks(store) -> None:  # type: ignore[no-untyped-def]
    root, ids = store
    result = run(
        "du",
        "--root",
        str(root),
        "--format",
        "table {{.ID}}\\t{{.Size}}\\t{{.ApparentSize}}\\t{{.CacheID}}\\t{{.Sharing}}",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "SIZE", "APPARENT", "CACHE", "ID", "SHARING"]
    api = next(line for line in lines if line.startswith(ids["api"]))
    assert api.startswith(ids["api"] + "*")  # a mutable record, marked as buildx does
    assert api.split()[-2:] == ["api-m2", "locked"]


def test_du_json_with_buildx_keys(store) -> None:  # type: ignore[no-untyped-def]
    root, ids = store
    result = run("du", "--root", str(root), "--format", "json", "--json-keys", "buildx")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["ID"] for r in rows} == set(ids.values())
    for key in (
        "ID",
        "CreatedAt",
        "LastUsedAt",
        "UsageCount",
        "Size",
        "Shared",
        "InUse",
        "Mutable",
        "Parents",
        "Description",
        "Type",
        "Reclaimable",
    ):
        assert all(key in r for r in rows), key
    api = next(r for r in rows if r["ID"] == ids["api"])
    assert api["Type"] == "exec.cachemount" and isinstance(api["Size"], int)
    assert api["CacheMount"] == {"ID": "api-m2", "Target": "/root/.m2", "Sharing": "locked"}
    assert api["CreatedAt"].endswith("Z")


def test_docker_filters_repeated_key_or_and_different_keys_and(store) -> None:  # type: ignore[no-untyped-def]
    root, ids = store

    def du(*filters: str) -> set[str]:
        args = [a for f in filters for a in ("--filter", f)]
        result = run("du", "--root", str(root), "--format", "json", *args)
        assert result.returncode == 0, result.stderr
        return set(_json(result.stdout))

    everything = set(ids.values())
    mounts = {ids["api"], ids["web"], ids["cli"]}
    assert du("type=exec.cachemount") == mounts
    assert du("type=exec.cachemount", "type=regular") == everything
    assert du("type=regular", "label=team=infra") == {ids["team-infra"]}
    assert du("label=project") == mounts
    assert du("description=sparse") == {ids["sparse"]}
    assert du(f"id={ids['sparse'][:6]}") == {ids["sparse"]}  # buildx: a substring
    teams = {ids["team-infra"], ids["team-web"]}
    assert du("type!=exec.cachemount", "label=team") == teams  # one Docker value: all AND-ed
    assert du("type!=exec.cachemount", "mutable") == everything  # containerd: OR-ed


def test_until_means_not_used_within_for_du_and_prune(store) -> None:  # type: ignore[no-untyped-def]
    root, ids = store
    old = set(ids.values()) - {ids["sparse"]}  # the sparse layer was used ten minutes ago
    for args in (["--filter", "until=24h"], ["--until", "24h"], ["--age", "1d"]):
        result = run("du", "--root", str(root), "--format", "json", *args)
        assert result.returncode == 0, result.stderr
        assert set(_json(result.stdout)) == old, args
    result = run("du", "--root", str(root), "--filter", "unused-for=24h", "--until", "1h")
    assert result.returncode == 2 and "keep one of them" in result.stderr
    # docker buildx prune -af --filter until=24h
    dry = run("prune", "--root", str(root), "-af", "--filter", "until=24h", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert _ids_out(dry.stdout.split("Would free")[0]) == old
    done = run("prune", "--root", str(root), "-af", "--filter=until=24h")
    assert done.returncode == 0, done.stderr
    with CacheManager.open(root) as cm:
        assert {r.id for r in cm.disk_usage()} == {ids["sparse"]}


def test_keep_storage_is_the_old_name_of_reserved_space(store) -> None:  # type: ignore[no-untyped-def]
    root, _ids = store

    def dry(*args: str) -> set[str]:
        result = run("prune", "--root", str(root), "--dry-run", "--format", "json", *args)
        assert result.returncode == 0, result.stderr
        return set(_json(result.stdout))

    assert dry("--keep-storage", "1GB") == dry("--reserved-space", "1GB") == set()
    assert dry("--keep-storage", "40kB") == dry("--reserved-space", "40kB") != set()
    both = run("prune", "--root", str(root), "--keep-storage", "1GB", "--reserved-space", "1GB")
    assert both.returncode == 2 and "older name of --reserved-space" in both.stderr
    bare = run("prune", "--root", str(root), "--force", "--keep-storage", "512")
    assert bare.returncode == 2
    assert "512MB" in bare.stderr and "--max-used-space" in bare.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["du", "--filter", "colour=red"], "unknown filter key 'colour'"),
        (["du", "--filter", "type=regular,mutable"], "one selector per --filter"),
        (["du", "--filter", "until=soon"], "not a duration"),
        (["du", "--verbose", "--format", "json"], "--verbose is --format pretty"),
        (["du", "--format", "{{.Nope}}"], "no field .Nope"),
        (["du", "--format", "{{range .}}"], "cannot read"),
        (["du", "--format", "nothing here"], "expected table, json, pretty or a template"),
        (["prune", "--force", "--filter", "until=24h", "--keep-duration", "1h"], "keep one"),
        (["prune", "--force", "--filter", "label!=team"], "label.<key>"),
        (["prune", "--force", "--filter", "label=team", "--filter", "label!=x"], "missing label"),
    ],
)
def test_what_means_something_else_is_refused_saying_what_to_write(
    store,
    args: list[str],
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    root, _ids = store
    result = run(*args[:1], "--root", str(root), *args[1:])
    assert result.returncode == 2, result.stdout
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    with CacheManager.open(root) as cm:
        assert len(cm.disk_usage()) == len(_ids)  # nothing was removed


def test_du_table_shows_apparent_size_where_it_differs(store) -> None:  # type: ignore[no-untyped-def]
    root, ids = store
    result = run("du", "--root", str(root))
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0]
    assert header.split()[:6] == ["ID", "RECLAIMABLE", "SIZE", "LAST", "ACCESSED", "APPARENT"]
    sparse = next(line for line in result.stdout.splitlines() if line.startswith(ids["sparse"]))
    assert "52.43MB" in sparse  # 50 MiB of length, next to a few kB on disk


def test_prune_verbose_and_template_per_record(store) -> None:  # type: ignore[no-untyped-def]
    root, ids = store
    verbose = run(
        "prune", "--root", str(root), "--force", "--verbose", "--filter", "label.team==web"
    )
    assert verbose.returncode == 0, verbose.stderr
    assert "ID:" in verbose.stdout and ids["team-web"] in verbose.stdout
    assert "Labels:\n - team=web" in verbose.stdout
    assert verbose.stdout.rstrip().splitlines()[-1].startswith("Total:")
    templated = run(
        "prune",
        "--root",
        str(root),
        "--force",
        "--filter",
        "label=team=infra",
        "--format",
        "{{.ID}} {{.Size}}",
    )
    assert templated.returncode == 0, templated.stderr
    assert templated.stdout.split()[0] == ids["team-infra"]
