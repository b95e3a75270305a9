"""Tests for cachetui.core.filters: the containerd filter language."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cachetui.core.errors import FilterSyntaxError, InvalidError
from cachetui.core.filters import (
    FLAG_KEYS,
    KEYS,
    Filter,
    FilterSet,
    RegexError,
    Selector,
    compile_regex,
    parse,
    parse_all,
    usage_fields,
)
from cachetui.core.types import RecordType

ID_A = "a" * 25
ID_B = "b" * 25
ID_C = "c" * 25


def record(
    id: str = ID_A,
    parents: tuple[str, ...] = (),
    description: str = "",
    record_type: str = "regular",
    in_use: bool = False,
    mutable: bool = False,
    shared: bool = False,
) -> dict[str, str]:
    return usage_fields(
        id=id,
        parents=parents,
        description=description,
        record_type=record_type,
        in_use=in_use,
        mutable=mutable,
        shared=shared,
    )


ROWS = [
    record(ID_A, description="golang:1.22", record_type="regular", in_use=True),
    record(ID_B, (ID_A,), "local source for context", "source.local", mutable=True),
    record(ID_C, (ID_A, ID_B), "", "exec.cachemount", mutable=True, shared=True),
    record("d" * 25, (), "internal thing", "", mutable=False),
]


def selected(filters: list[str] | str) -> list[str]:
    fs = parse_all(filters)
    return [row["id"] for row in ROWS if fs.matches(row)]


def error_of(text: str) -> FilterSyntaxError:
    with pytest.raises(FilterSyntaxError) as info:
        parse(text)
    return info.value


# --------------------------------------------------------------- id== selects one record


def test_id_equal_selects_only_that_record():
    assert selected(f"id=={ID_B}") == [ID_B]


def test_inuse_selects_only_in_use_rows():
    assert selected("inuse") == [ID_A]


def test_mutable_selects_only_mutable_rows():
    assert selected("mutable") == [ID_B, ID_C]


def test_immutable_selects_the_others():
    assert selected("immutable") == [ID_A, "d" * 25]


def test_type_equal_exec_cachemount():
    assert selected("type==exec.cachemount") == [ID_C]


def test_description_regex_is_unanchored():
    assert selected("description~=olang") == [ID_A]
    assert parse("description~=olang").matches({"description": "golang"})


def test_two_filter_strings_are_ored():
    assert selected(["type==source.local", "type==regular"]) == [ID_A, ID_B, "d" * 25]


def test_selectors_in_one_string_are_anded():
    assert selected("type==source.local,mutable") == [ID_B]
    assert selected("type==source.local,immutable") == []


def test_same_key_equal_to_two_values_is_rejected_as_never_matching():
    err = error_of("type==regular,type==internal")
    assert err.position == len("type==regular,")
    assert "can never match" in str(err)
    assert "'type' cannot equal both 'regular' and 'internal'" in str(err)
    assert "use separate filters to OR them" in str(err)


def test_buildkit_default_gc_policy_bug_is_rejected():
    text = "type==source.local,type==exec.cachemount,type==source.git.checkout"
    err = error_of(text)
    assert err.position == len("type==source.local,")
    assert err.filter_text == text


def test_type_not_equal_regular_matches_every_non_regular_record():
    # an empty record type is reported as "regular", so it does not match
    assert selected("type!=regular") == [ID_B, ID_C]


def test_bad_operator_double_equals_after_not_equal_reports_position():
    err = error_of("type!==x")
    assert err.position == 6
    assert "at position 6: unexpected '='" in str(err)
    assert str(err).startswith('invalid filter "type!==x" at position 6: ')
    assert err.filter_text == "type!==x"


# --------------------------------------------------------------- matching semantics


def test_no_filters_match_everything():
    assert not parse_all([])
    assert parse_all([]).matches({})
    assert FilterSet().matches({"id": "x"})
    assert selected([]) == [row["id"] for row in ROWS]


def test_filter_set_is_truthy_with_a_filter():
    assert parse_all("mutable")
    assert len(parse_all(["mutable", "inuse"]).filters) == 2


def test_bare_string_counts_as_one_filter():
    assert parse_all("type==regular,mutable").filters == (parse("type==regular,mutable"),)


def test_parse_all_accepts_parsed_filters_and_sets():
    f = parse("inuse")
    fs = parse_all([f, "mutable"])
    assert fs.filters[0] is f
    assert parse_all(fs) is fs


def test_equal_requires_presence():
    assert not parse("description==x").matches({})
    assert parse('description==""').matches({"description": ""})
    assert not parse('description==""').matches({})


def test_not_equal_treats_absent_as_empty():
    assert parse("description!=x").matches({})
    assert not parse('description!=""').matches({})
    assert parse('description!=""').matches({"description": "y"})


def test_regex_on_absent_field_searches_empty_string():
    assert parse("description~=^$").matches({})
    assert not parse("description~=.").matches({})


def test_regex_is_search_not_match():
    f = parse("id~=bc")
    assert f.matches({"id": "abcd"})
    assert not parse("id~=^bc").matches({"id": "abcd"})


def test_presence_of_value_key():
    assert parse("parents").matches({"parents": "x"})
    assert not parse("parents").matches({})


def test_parents_are_joined_by_semicolon():
    row = record(ID_C, (ID_A, ID_B))
    assert row["parents"] == f"{ID_A};{ID_B}"
    assert parse(f"parents~={ID_B}").matches(row)
    assert parse(f'parents=="{ID_A};{ID_B}"').matches(row)


def test_whitespace_between_tokens_is_ignored():
    assert parse(" type == regular , inuse ") == parse("type==regular,inuse")
    assert parse("description==a b").selectors[0].value == "a b"


# --------------------------------------------------------------- presence flags


def test_usage_fields_flags_present_only_when_true():
    row = record(in_use=True, mutable=True, shared=True)
    assert row["inuse"] == row["mutable"] == row["shared"] == ""
    assert "immutable" not in row and "private" not in row
    row = record(in_use=False, mutable=False, shared=False)
    assert "inuse" not in row and "mutable" not in row and "shared" not in row
    assert row["immutable"] == row["private"] == ""


def test_usage_fields_values_follow_adapt_usage_info():
    row = record(ID_A, (), "", "")
    assert row == {"id": ID_A, "type": "regular", "immutable": "", "private": "", "health": "ok"}
    row = record(ID_B, (ID_A,), "desc", "source.local")
    assert row["parents"] == ID_A and row["description"] == "desc"
    assert row["type"] == "source.local"


def test_shared_and_private_flags():
    assert selected("shared") == [ID_C]
    assert selected("private") == [ID_A, ID_B, "d" * 25]


@pytest.mark.parametrize("flag", sorted(FLAG_KEYS))
@pytest.mark.parametrize("op", ["==", "!=", "~="])
def test_flag_with_operator_is_rejected(flag: str, op: str):
    err = error_of(f"{flag}{op}true")
    assert err.position == len(flag)
    assert "is a flag" in str(err)
    assert f"('{flag}')" in str(err)


def test_inuse_maybe_explains_flag_use():
    err = error_of("inuse==maybe")
    assert err.position == 5
    assert "write it bare ('inuse')" in str(err)


def test_mutable_true_points_at_immutable_for_the_others():
    assert "'immutable' for the others" in str(error_of("mutable==true"))


@pytest.mark.parametrize(
    ("text", "position"),
    [("mutable,immutable", 8), ("immutable,inuse,mutable", 16), ("shared,private", 7)],
)
def test_contradictory_flags_never_match(text: str, position: int):
    err = error_of(text)
    assert err.position == position
    assert "can never match" in str(err)


def test_repeated_flag_and_repeated_equal_value_are_fine():
    assert parse("mutable,mutable").matches({"mutable": ""})
    assert parse("type==regular,type==regular").matches({"type": "regular"})


def test_equal_and_not_equal_same_value_never_match():
    err = error_of("type!=frontend,inuse,type==frontend")
    assert err.position == len("type!=frontend,inuse,")
    assert "cannot both equal and differ" in str(err)


def test_equal_value_outside_regex_never_matches():
    assert error_of("type==regular,type~=^source").position == 14
    assert error_of("type~=^source,type==regular").position == 14
    assert parse("type==source.local,type~=^source").matches({"type": "source.local"})


# --------------------------------------------------------------- quoting


def test_quoted_value_may_contain_commas():
    f = parse('description=="a, b",inuse')
    assert f.selectors[0].value == "a, b"
    assert f.matches({"description": "a, b", "inuse": ""})


@pytest.mark.parametrize(
    ("quoted", "value"),
    [
        (r'"say \"hi\""', 'say "hi"'),
        (r'"back\\slash"', "back\\slash"),
        (r'"line\nnext"', "line\nnext"),
        (r'"tab\there"', "tab\there"),
        (r'"\x41\x7a"', "Az"),
        (r'"\u00e9\U0001F600"', "é😀"),
        (r'"\101"', "A"),
        (r'"\r\a\b\f\v"', "\r\a\b\f\v"),
        ('""', ""),
    ],
)
def test_quoted_value_escapes(quoted: str, value: str):
    assert parse(f"description=={quoted}").selectors[0].value == value


def test_quoted_regex_keeps_regex_escapes_when_doubled():
    f = parse(r'id~="^\\d+,x$"')
    assert f.selectors[0].value == r"^\d+,x$"
    assert f.matches({"id": "12,x"})


def test_bare_regex_keeps_backslashes():
    assert parse(r"id~=^\d+$").matches({"id": "123"})


def test_bare_value_may_contain_equals_after_first_character():
    assert parse("description==a=b").selectors[0].value == "a=b"


# --------------------------------------------------------------- errors and positions


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("type==a,,x", 8, "empty selector"),
        (",type==a", 0, "empty selector"),
        ("type==a,", 8, "empty selector"),
        ("type==a, ", 9, "empty selector"),
        ("", 0, "empty filter"),
        ("   ", 0, "empty filter"),
        ("type==", 6, "missing value for 'type'"),
        ("type==,mutable", 6, "missing value for 'type'"),
        ("type== ,mutable", 7, "missing value for 'type'"),
        ("id~=", 4, "missing value for 'id'"),
        ("type!==x", 6, "unexpected '='"),
        ("type===x", 6, "unexpected '='"),
        ("type=x", 4, "expected one of ==, !=, ~="),
        ("type=x", 4, "unexpected '='"),
        ("type<x", 4, "expected one of ==, !=, ~="),
        ("type!x", 4, "expected one of ==, !=, ~="),
        ("type x", 5, "unexpected 'x'"),
        ('type=="abc', 6, "unterminated quoted value"),
        ('type=="abc\\"', 6, "unterminated quoted value"),
        ('type=="a\\qb"', 8, "unknown escape sequence '\\q'"),
        ('type=="\\x4"', 7, "needs 2 hex digits"),
        ('type=="\\U00110000"', 7, "too large"),
        ('type=="\\400"', 7, "octal"),
        ('type=="a"b', 9, "expected ',' or the end after a quoted value"),
        ('type==a"b"', 7, "inside an unquoted value"),
        ("id~=(", 4, "invalid regular expression"),
        ("id~=ab(", 6, "invalid regular expression"),
        ('id~="("', 4, "invalid regular expression"),
        ("x==1", 0, "unknown filter key 'x'"),
        ("inuse,bogus", 6, "unknown filter key 'bogus'"),
        ("parent==x", 0, "unknown filter key 'parent'"),
        ("1type==a", 0, "expected a field name"),
        ("_id==a", 0, "expected a field name"),
        ("==a", 0, "expected a field name"),
    ],
)
def test_syntax_errors_report_text_and_position(text: str, position: int, fragment: str):
    err = error_of(text)
    assert err.position == position
    assert err.filter_text == text
    assert fragment in str(err)
    assert f"at position {position}: " in str(err)
    assert str(err).startswith("invalid filter ")


def test_filter_syntax_error_is_an_invalid_error():
    with pytest.raises(InvalidError):
        parse_all(["inuse", "type!==x"])


def test_non_string_filter_is_a_type_error():
    with pytest.raises(TypeError):
        parse(42)  # type: ignore[arg-type]


# --------------------------------------------------------------- values and rendering


def test_selector_equality_ignores_position():
    assert Selector("type", "==", "a", 0) == Selector("type", "==", "a", 17)


def test_filter_equality_ignores_original_text():
    assert parse("type == regular") == parse("type==regular")
    assert parse("type == regular").text == "type == regular"


def test_str_renders_canonical_text():
    f = parse(' type == "regular" , description=="a, \\"b\\"" ,inuse,id~=^x')
    assert str(f) == 'type==regular,description=="a, \\"b\\"",inuse,id~=^x'


@pytest.mark.parametrize("value", ["", "a b", "=x", "!x", "~x", 'a"b', "a,b", "\x00", "\u2028"])
def test_values_needing_quotes_are_quoted(value: str):
    s = Selector("description", "==", value)
    assert str(s).startswith('description=="')
    assert parse(str(s)).selectors == (s,)


def test_directly_built_selector_is_validated():
    with pytest.raises(FilterSyntaxError):
        Selector("bogus", "==", "x")
    with pytest.raises(FilterSyntaxError):
        Selector("mutable", "==", "true")
    with pytest.raises(FilterSyntaxError):
        Selector("id", "~=", "(")
    with pytest.raises(FilterSyntaxError):
        Selector("id", "=", "x")


def test_directly_built_filter_is_linted():
    with pytest.raises(FilterSyntaxError, match="can never match"):
        Filter("", (Selector("type", "==", "a"), Selector("type", "==", "b")))
    with pytest.raises(FilterSyntaxError, match="empty filter"):
        Filter("", ())
    assert Filter("", (Selector("inuse", ""),)).text == "inuse"


def test_matching_many_records_is_fast_enough():
    fs = parse_all(["type==source.local,mutable", "description~=go,inuse", "id!=x"])
    rows = [record(f"{i:025d}", description="go", in_use=bool(i % 2)) for i in range(20_000)]
    assert sum(fs.matches(r) for r in rows) == 20_000


# --------------------------------------------------------------- properties

TOKENS = [
    "id", "parents", "description", "type", "inuse", "mutable", "immutable", "shared",
    "private", "x", "==", "!=", "~=", "=", "!", "~", ",", " ", '"', "\\", "\\x4", "\\u",
    "\\U0010ffff", "\\n", "\\q", "(", ")", "[", "*", "a", "1", "_", "é", "\x00", "\n",
]  # fmt: skip


@pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")  # re on "[["
@settings(max_examples=500)
@given(st.one_of(st.text(), st.lists(st.sampled_from(TOKENS), max_size=12).map("".join)))
def test_parse_returns_a_filter_or_raises_filter_syntax_error(text: str):
    try:
        f = parse(text)
    except FilterSyntaxError as err:
        assert 0 <= err.position <= len(text)
        assert err.filter_text == text
    else:
        assert isinstance(f, Filter)
        assert f.selectors
        assert parse(str(f)) == f


def _valid_regex(pattern: str) -> bool:
    try:
        compile_regex(pattern)
    except RegexError:
        return False
    return True


# ``sharing`` takes only its three modes; label keys stand in for every label.
VALUE_KEYS = [*sorted(KEYS - FLAG_KEYS - {"sharing"}), "label.team", "label.com.example/x"]
FREE_VALUE_KEYS = [key for key in VALUE_KEYS if key != "type"]  # type takes a record type
values = st.one_of(
    st.text(),
    st.sampled_from(["", "regular", "source.local", "a,b", '"q"', "=x", " pad ", "a b"]),
)
regexes = st.one_of(
    values.map(re.escape),
    st.sampled_from(["^a", "b$", r"\d+", "(x|y)", ".*", "[,]", "a{2}", r"\""]),
    st.text(alphabet="ab()[]*+?|^$.\\,", max_size=8).filter(_valid_regex),
)
value_selectors = st.one_of(
    st.builds(Selector, st.sampled_from(FREE_VALUE_KEYS), st.sampled_from(["==", "!="]), values),
    st.builds(
        Selector,
        st.just("type"),
        st.sampled_from(["==", "!="]),
        st.sampled_from([member.value for member in RecordType]),
    ),
    st.builds(Selector, st.sampled_from(VALUE_KEYS), st.just("~="), regexes),
    st.builds(Selector, st.sampled_from(VALUE_KEYS), st.just(""), st.just("")),
    st.builds(
        Selector,
        st.just("sharing"),
        st.sampled_from(["==", "!="]),
        st.sampled_from(["shared", "private", "locked"]),
    ),
)
flag_selectors = st.builds(Selector, st.sampled_from(sorted(FLAG_KEYS)), st.just(""), st.just(""))


def _filter_or_none(selectors: list[Selector]) -> Filter | None:
    try:
        return Filter("", tuple(selectors))
    except FilterSyntaxError:
        return None


@pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")  # re on "[["
@settings(max_examples=500, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.lists(st.one_of(value_selectors, flag_selectors), min_size=1, max_size=6))
def test_rendered_filter_parses_back_to_equal_selectors(selectors: list[Selector]):
    f = _filter_or_none(selectors)
    assume(f is not None)
    assert f is not None
    again = parse(str(f))
    assert again.selectors == f.selectors
    assert again == f
    assert str(again) == str(f)


@pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")  # re on "[["
@settings(max_examples=300)
@given(
    st.lists(st.one_of(value_selectors, flag_selectors), min_size=1, max_size=4),
    st.builds(
        record,
        id=st.sampled_from([ID_A, ID_B]),
        parents=st.lists(st.sampled_from([ID_A, ID_B]), max_size=2).map(tuple),
        description=values,
        record_type=st.sampled_from(["", "regular", "source.local", "exec.cachemount"]),
        in_use=st.booleans(),
        mutable=st.booleans(),
        shared=st.booleans(),
    ),
)
def test_filter_matches_iff_every_selector_matches(selectors: list[Selector], row: dict[str, str]):
    f = _filter_or_none(selectors)
    assume(f is not None)
    assert f is not None
    assert f.matches(row) == all(s.matches(row) for s in selectors)


def test_parse_all_rejects_non_strings_at_the_boundary():
    for bad in (None, 5, [5], [b"type==regular"]):
        with pytest.raises(FilterSyntaxError):
            parse_all(bad)  # type: ignore[arg-type]


# --------------------------------------------------------------- record types are a closed set


@pytest.mark.parametrize(
    ("text", "position"),
    [("type==bogus", 6), ("type!=regularr", 6), ("mutable, type == Regular", 17)],
)
def test_unknown_record_type_is_refused_at_the_value(text: str, position: int):
    err = error_of(text)
    assert err.position == position
    assert "unknown record type" in str(err)
    assert "record types: regular, internal, frontend, source.local" in str(err)


def test_every_record_type_is_accepted_and_regex_is_free():
    for member in RecordType:
        assert parse(f"type=={member.value}").matches({"type": member.value})
        assert parse(f"type!={member.value}")
    assert parse("type~=^source").matches({"type": "source.local"})


def test_a_syntax_error_after_an_unknown_type_is_reported_first():
    err = error_of("type==bogus,,mutable")
    assert "empty selector" in str(err)
