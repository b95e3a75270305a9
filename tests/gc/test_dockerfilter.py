"""Docker's key=value filters into the containerd language and a keep duration."""

from __future__ import annotations

import pytest

from cachetui.core.errors import InvalidError
from cachetui.gcpolicy.dockerfilter import MAX_COMBINATIONS, translate


def test_until_and_unused_for_become_the_keep_duration() -> None:
    assert translate(["until=24h"]).keep_duration == 86400
    assert translate(["unused-for=90m"]).keep_duration == 5400
    assert translate(["until=24h"]).filters == ()


def test_equal_becomes_double_equal_and_id_a_substring_match() -> None:
    got = translate(["type=regular", "id=abc", "description==RUN make"])
    assert got.filters == ('type==regular,id~=abc,description=="RUN make"',)


def test_repeated_key_is_or_and_different_keys_and() -> None:
    got = translate(["type=source.local", "type=exec.cachemount", "description~=go"])
    assert got.filters == (
        "type==source.local,description~=go",
        "type==exec.cachemount,description~=go",
    )


def test_not_equal_and_presence_pass_through() -> None:
    assert translate(["type!=regular", "mutable"]).filters == ("type!=regular,mutable",)


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["until=24h", "unused-for=1h"], "already given"),
        (["until=soon"], "not a duration"),
        (["until!=24h"], "write until=<duration>"),
        (["colour=red"], "unknown filter key 'colour'"),
        (["type=regular", "type!=regular"], "can never match"),
        (["=x"], "no key"),
        ([""], "empty"),
    ],
)
def test_refusals_name_the_docker_text(items: list[str], message: str) -> None:
    with pytest.raises(InvalidError, match=message):
        translate(items)


def test_too_many_combinations_are_refused() -> None:
    items = [f"type=t{i}" for i in range(MAX_COMBINATIONS)] + ["id=a", "id=b"]
    with pytest.raises(InvalidError, match="combinations"):
        translate(items)
