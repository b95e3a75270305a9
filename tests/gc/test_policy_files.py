"""Reading policy files people already have: buildkitd.toml, daemon.json, cachetui's TOML.

The buildkitd.toml texts are BuildKit's documented examples (docs/buildkitd.toml.md, the
current one and the older keepBytes one); the daemon.json texts are Docker's documented
``builder.gc`` examples. Values are checked as the daemons read them: go-units sizes are
binary, percentages are rounded up to a decimal GB.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cachetui.core.policy import DiskStat, default_gc_policies
from cachetui.core.types import PruneOptions
from cachetui.gcpolicy import PolicyError, default_policy, load_policy, parse_policy

GB = 10**9
MiB = 1 << 20
DISK = DiskStat(total=200 * 2**30, free=150 * 2**30)  # a 200 GiB disk
HOUR = 3600.0

BUILDKITD_DOCUMENTED = """\
debug = true
root = "/var/lib/buildkit"

[grpc]
  address = [ "tcp://0.0.0.0:1234" ]

[worker.oci]
  enabled = true
  platforms = [ "linux/amd64", "linux/arm64" ]
  snapshotter = "auto" # overlayfs or native, default value is "auto".
  rootless = false
  noProcessSandbox = false
  # gc enables/disables garbage collection
  gc = true
  # reservedSpace is the minimum amount of disk space guaranteed to be
  # retained by this buildkit worker
  reservedSpace = "30%"
  maxUsedSpace = "60%"
  minFreeSpace = "20GB"
  binary = ""
  apparmor-profile = ""
  max-parallelism = 4
  [worker.oci.labels]
    "foo" = "bar"

  [[worker.oci.gcpolicy]]
    # reservedSpace is the minimum amount of disk space guaranteed to be
    # retained by this policy
    reservedSpace = "512MB"
    maxUsedSpace = "1GB"
    minFreeSpace = "10GB"
    # keepDuration can be an integer number of seconds (e.g. 172800), or a
    # string duration (e.g. "48h")
    keepDuration = "48h"
    filters = [ "type==source.local", "type==exec.cachemount", "type==source.git.checkout"]
  [[worker.oci.gcpolicy]]
    all = true
    reservedSpace = 1024000000

[worker.containerd]
  address = "/run/containerd/containerd.sock"
  enabled = true
  namespace = "buildkit"
  gc = true
"""

BUILDKITD_KEEPBYTES = """\
[worker.containerd]
  enabled = true
  gc = true
  gckeepstorage = 9000
  [[worker.containerd.gcpolicy]]
    keepBytes = "512MB"
    keepDuration = 172800
    filters = [ "type==source.local", "type==exec.cachemount", "type==source.git.checkout"]
  [[worker.containerd.gcpolicy]]
    all = true
    keepBytes = 1024000000
"""

DAEMON_JSON_OLD = """\
{
  "builder": {
    "gc": {
      "enabled": true,
      "defaultKeepStorage": "10GB",
      "policy": [
        { "keepStorage": "10GB", "filter": ["unused-for=2200h"] },
        { "keepStorage": "50GB", "filter": ["unused-for=3300h"] },
        { "keepStorage": "100GB", "all": true }
      ]
    }
  }
}
"""

DAEMON_JSON_NEW = """\
{
  "builder": {
    "gc": {
      "enabled": true,
      "defaultReservedSpace": "10GB",
      "policy": [
        {
          "maxUsedSpace": "512MB",
          "keepDuration": "48h",
          "filter": ["type=source.local", "type=exec.cachemount"]
        },
        { "reservedSpace": "10GB", "maxUsedSpace": "100GB", "keepDuration": "1440h" },
        { "reservedSpace": "50GB", "minFreeSpace": "20GB", "maxUsedSpace": "200GB", "all": true }
      ]
    }
  }
}
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_buildkitd_documented_example(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, "buildkitd.toml", BUILDKITD_DOCUMENTED), DISK)
    assert policy.kind == "buildkitd.toml"
    assert policy.policies == [
        PruneOptions(
            filters=("type==source.local", "type==exec.cachemount", "type==source.git.checkout"),
            keep_duration=48 * HOUR,
            reserved_space=512 * MiB,  # go-units: "512MB" is binary
            max_used_space=1024 * MiB,
            min_free_space=10 * 1024 * MiB,
        ),
        PruneOptions(all=True, reserved_space=1024000000),
    ]
    assert [t.line for t in policy.tiers] == [26, 36]
    assert policy.problems == ()  # a sound list: the last tier caps everything


def test_buildkitd_keepbytes_is_reserved_space_with_a_warning(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, "buildkitd.toml", BUILDKITD_KEEPBYTES), DISK)
    assert [p.reserved_space for p in policy.policies] == [512 * MiB, 1024000000]
    assert policy.policies[0].keep_seconds == 48 * HOUR  # integer seconds
    warnings = [(p.line, p.message) for p in policy.warnings]
    assert [line for line, _ in warnings] == [6, 11]
    assert all("keepBytes is deprecated" in message for _, message in warnings)


def test_buildkitd_without_gcpolicy_is_the_default_list_with_the_worker_space(
    tmp_path: Path,
) -> None:
    text = '[worker.oci]\n  gc = true\n  reservedSpace = "10%"\n  maxUsedSpace = "50GB"\n'
    policy = load_policy(_write(tmp_path, "buildkitd.toml", text), DISK)
    reserved = (200 * 2**30 * 10 // 100 // 2**30 + 1) * GB  # BuildKit rounds % up to GB
    worker = PruneOptions(reserved_space=reserved, max_used_space=50 * 1024 * MiB)
    assert policy.policies == default_gc_policies(DISK, worker)
    assert policy.policies[2] == worker
    assert policy.problems == ()  # BuildKit's own list is not linted for a missing all


def test_default_list_for_this_disk() -> None:
    policy = default_policy(DISK)
    opts = policy.policies
    assert len(opts) == 4
    assert opts[0].filters == (
        "type==source.local",
        "type==exec.cachemount",
        "type==source.git.checkout",
    )
    assert (opts[0].keep_seconds, opts[0].max_used_space) == (48 * HOUR, 512 * 10**6)
    # 200 GiB disk: reserved min(10% -> 21 GB, 10 GB), max used min(80% -> 161 GB, 100 GB),
    # min free 20% -> 41 GB (each percentage in whole GiB, plus one, as decimal GB).
    for tier in opts[1:]:
        assert (tier.reserved_space, tier.max_used_space, tier.min_free_space) == (
            10 * GB,
            100 * GB,
            41 * GB,
        )
    assert opts[1].keep_seconds == 60 * 24 * HOUR and opts[3].all


def test_daemon_json_documented_keep_storage(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, "daemon.json", DAEMON_JSON_OLD), DISK)
    assert policy.kind == "daemon.json"
    assert policy.policies == [
        PruneOptions(keep_duration=2200 * HOUR, reserved_space=10 * 1024 * MiB),
        PruneOptions(keep_duration=3300 * HOUR, reserved_space=50 * 1024 * MiB),
        PruneOptions(all=True, reserved_space=100 * 1024 * MiB),
    ]
    assert [t.line for t in policy.tiers] == [7, 8, 9]


def test_daemon_json_repeated_key_is_or(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, "daemon.json", DAEMON_JSON_NEW), DISK)
    first, second, third = policy.policies
    assert first.filters == ("type==source.local", "type==exec.cachemount")
    assert first.keep_seconds == 48 * HOUR and first.max_used_space == 512 * MiB
    assert second.keep_seconds == 1440 * HOUR
    assert third == PruneOptions(
        all=True,
        reserved_space=50 * 1024 * MiB,
        min_free_space=20 * 1024 * MiB,
        max_used_space=200 * 1024 * MiB,
    )
    assert policy.problems == ()


def test_daemon_json_filter_object_form_and_case_insensitive_keys(tmp_path: Path) -> None:
    text = (
        '{"builder": {"GC": {"Policy": [{"KeepStorage": "1GB", '
        '"Filter": {"until": {"24h": true}}, "All": true}]}}}'
    )
    policy = load_policy(_write(tmp_path, "daemon.json", text), DISK)
    assert policy.policies == [
        PruneOptions(all=True, keep_duration=24 * HOUR, reserved_space=1 << 30)
    ]


def test_cachetui_toml(tmp_path: Path) -> None:
    text = """\
# cachetui's own list
[[tier]]
name = "reproducible"
filters = ["type==source.local", "type==exec.cachemount"]
keep-duration = "48h"
max-used-space = "512MB"

[[tier]]
name = "old"
docker-filters = ["until=7d", "type=regular"]
max-used-space = "10%"

[[tier]]
all = true
max-used-space = "20GiB"
"""
    policy = load_policy(_write(tmp_path, "gc.toml", text), DISK)
    assert policy.kind == "cachetui"
    assert [t.name for t in policy.tiers] == ["reproducible", "old", ""]
    assert [t.line for t in policy.tiers] == [2, 8, 13]
    assert policy.policies[0].max_used_space == 512 * 10**6  # cachetui sizes are decimal
    assert policy.policies[1].filters == ("type==regular",)
    assert policy.policies[1].keep_seconds == 7 * 24 * HOUR
    assert policy.policies[1].max_used_space == DISK.total // 10  # exact percentage
    assert policy.policies[2] == PruneOptions(all=True, max_used_space=20 * 2**30)
    assert policy.problems == ()


@pytest.mark.parametrize(
    ("name", "text", "line", "message"),
    [
        (
            "buildkitd.toml",
            '[worker.oci]\n[[worker.oci.gcpolicy]]\n  all = true\n  keepduration = "48h"\n',
            4,
            "unknown key 'keepduration' (did you mean keepDuration?)",
        ),
        (
            "buildkitd.toml",
            '[[worker.oci.gcpolicy]]\n  filters = ["type==source.local,type==exec.cachemount"]\n',
            2,
            "can never match",
        ),
        (
            "buildkitd.toml",
            '[[worker.oci.gcpolicy]]\n  all = true\n  maxUsedSpace = "120%"\n',
            3,
            "above 100%",
        ),
        (
            "buildkitd.toml",
            '[[worker.oci.gcpolicy]]\n  all = true\n  keepDuration = "7d"\n',
            3,
            "write 168h",
        ),
        (
            "buildkitd.toml",
            '[[worker.oci.gcpolicy]]\n  all = true\n  maxUsedSpace = "10 gigs"\n',
            3,
            "would read it as 0",
        ),
        (
            "daemon.json",
            '{\n  "builder": {\n    "gc": {\n      "policy": [\n'
            '        {"keepStorage": "1GB", "filters": ["until=1h"]}\n'
            "      ]\n    }\n  }\n}\n",
            5,
            "unknown key 'filters' (did you mean filter?)",
        ),
        (
            "daemon.json",
            '{"builder": {"gc": {"policy": [\n{"keepStorage": "1GB",\n'
            ' "filter": ["type=regular", "type!=regular"]}]}}}',
            3,
            "can never match",
        ),
        (
            "gc.toml",
            '[[tier]]\nall = true\n\n[[tier]]\nmax-used = "1GB"\n',
            5,
            "unknown key 'max-used' (did you mean max-used-space?)",
        ),
        ("gc.toml", '[[tier]]\nall = true\nmax-used-space = "101%"\n', 3, "at most 100%"),
        ("buildkitd.toml", "[worker.oci\n", 1, "not valid TOML"),
        ("daemon.json", '{"builder": {\n  "gc": }\n}', 2, "not valid JSON"),
    ],
)
def test_refused_with_the_line(
    tmp_path: Path, name: str, text: str, line: int, message: str
) -> None:
    path = _write(tmp_path, name, text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path, DISK)
    problems = caught.value.problems
    assert any(p.line == line and message in p.message for p in problems), problems
    assert f"{path}:{line}: error:" in str(caught.value)


def _warnings(text: str) -> list[tuple[int | None, str]]:
    return [(p.line, p.message) for p in parse_policy(text, "gc.toml", DISK).warnings]


def test_warns_about_a_shadowed_tier() -> None:
    text = '[[tier]]\nall = true\n\n[[tier]]\nfilters = ["type==regular"]\nmax-used-space = "1GB"\n'
    ((line, message),) = _warnings(text)
    assert line == 4 and "tier 2 can never remove anything: tier 1 (line 1)" in message


def test_warns_about_keep_duration_with_no_space_limit_behind_it() -> None:
    # KBVE/kbve#13573: one keep-duration tier, nothing to cap what is used often.
    text = '[[tier]]\nall = true\nkeep-duration = "48h"\nmax-used-space = "10GB"\n'
    ((line, message),) = _warnings(text)
    assert line == 1 and "keeps every record used within 48h" in message
    # A last tier that caps everything answers it.
    assert _warnings(text + '\n[[tier]]\nall = true\nmax-used-space = "20GB"\n') == []


def test_warns_about_reserved_above_max_used() -> None:
    text = '[[tier]]\nall = true\nreserved-space = "20GB"\nmax-used-space = "10GB"\n'
    ((line, message),) = _warnings(text)
    assert line == 1 and "reservedSpace 20GB is above maxUsedSpace 10GB" in message


def test_warns_when_no_tier_takes_internal_records() -> None:
    text = '[[tier]]\nmax-used-space = "10GB"\n'
    ((line, message),) = _warnings(text)
    assert line is None and "no tier has all = true" in message


def test_warnings_keep_file_order() -> None:
    text = """\
[[tier]]
all = true
keep-duration = "1h"
reserved-space = "2GB"
max-used-space = "1GB"

[[tier]]
all = true
keep-duration = "2h"
"""
    lines = [line for line, _ in _warnings(text)]
    assert lines == sorted(lines)
    assert set(lines) == {1, 7}


def test_unreadable_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="cannot read policy file"):
        load_policy(tmp_path / "missing.toml", DISK)
