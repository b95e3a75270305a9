"""Tests for cachetui.units: size/duration parsing and the buildx size format."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachetui.core.errors import InvalidError
from cachetui.units import (
    MAX_BYTES,
    MAX_DURATION,
    format_bytes_buildx,
    format_duration_ago,
    parse_duration,
    parse_size,
)

MIN = 60
HOUR = 3600
DAY = 86400

# --- formatting as docker buildx does --------------------------------------------------


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "0B"),
        (999, "999B"),
        (1000, "1kB"),
        (8224, "8.224kB"),
        (318_000_000, "318MB"),
        (1_704_000_000, "1.704GB"),
    ],
)
def test_buildx_byte_format(n: int, expected: str) -> None:
    assert format_bytes_buildx(n) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.45, "Less than a second"),
        (1, "1 second"),
        (47, "47 seconds"),
        (60, "About a minute"),
        (35 * MIN, "35 minutes"),
        (HOUR + 29 * MIN, "About an hour"),
        (HOUR + 31 * MIN, "2 hours"),
        (36 * HOUR, "36 hours"),
        (2 * DAY, "2 days"),
        (13 * DAY, "13 days"),
        (14 * DAY, "2 weeks"),
        (30 * DAY, "4 weeks"),
        (60 * DAY, "2 months"),
        (730 * DAY + 14 * DAY, "2 years"),
    ],
)
def test_relative_time_format(seconds: float, expected: str) -> None:
    assert format_duration_ago(seconds) == expected


def test_relative_time_clamps_negative_and_has_no_ago() -> None:
    assert format_duration_ago(-5) == "Less than a second"
    assert format_duration_ago(float("nan")) == "Less than a second"
    assert not format_duration_ago(3 * DAY).endswith("ago")
    assert format_duration_ago(float("inf")).endswith("years")


def test_byte_formats_larger_units() -> None:
    assert format_bytes_buildx(10**12) == "1TB"


# --- parse_size ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("123", 123),
        ("123B", 123),
        ("512MB", 512_000_000),
        ("10GiB", 10 * 2**30),
        ("1.5GB", 1_500_000_000),
        ("2gb", 2_000_000_000),
        ("2 GB", 2_000_000_000),
        ("1kB", 1000),
        ("1KB", 1000),
        ("1kib", 1024),
        ("3MiB", 3 * 2**20),
        ("1TB", 10**12),
        ("1TiB", 2**40),
        ("  7 b ", 7),
        (".5kB", 500),
        ("1.0005kB", 1000),  # truncated to whole bytes
        ("2.0B", 2),
    ],
)
def test_parse_size_valid(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_parse_size_percent() -> None:
    assert parse_size("20%", disk_total=1000) == 200
    assert parse_size("12.5 %", disk_total=1000) == 125
    assert parse_size("100%", disk_total=999) == 999
    assert parse_size("0%", disk_total=999) == 0


def test_parse_size_error_message_names_what_and_text() -> None:
    with pytest.raises(InvalidError) as info:
        parse_size("10QB", what="max-used-space")
    assert str(info.value) == (
        "invalid max-used-space '10QB': unknown unit 'QB' "
        "(use B, kB, MB, GB, TB, KiB, MiB, GiB, TiB or %)"
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "-1",
        "-5MB",
        "NaN",
        "nan",
        "inf",
        "MB",
        "1e3",
        "10QB",
        "10K",
        "1.5",  # a fractional plain byte count
        "1,000",
        "1_000",
        "0x10",
        "١٢",  # non-ASCII digits
        "101%",
        "9" * 30,  # over MAX_BYTES
        "9" * 5000,
    ],
)
def test_parse_size_invalid(text: str) -> None:
    with pytest.raises(InvalidError) as info:
        parse_size(text, disk_total=1000, what="reserved-space")
    assert "reserved-space" in str(info.value)
    assert f"'{text}'" in str(info.value)


def test_parse_size_percent_needs_disk_total() -> None:
    with pytest.raises(InvalidError, match="min-free-space '20%'"):
        parse_size("20%", what="min-free-space")


def test_parse_size_rejects_non_string() -> None:
    with pytest.raises(InvalidError):
        parse_size(12)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=MAX_BYTES))
def test_parse_size_round_trips_integers(n: int) -> None:
    assert parse_size(str(n)) == n


@given(st.text())
def test_parse_size_raises_only_invalid_error(text: str) -> None:
    try:
        value = parse_size(text, disk_total=10**12)
    except InvalidError:
        return
    assert 0 <= value <= MAX_BYTES


# --- parse_duration --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0.0),
        ("90s", 90.0),
        ("30m", 30 * MIN),
        ("48h", 48 * HOUR),
        ("7d", 7 * DAY),
        ("1w", 7 * DAY),
        ("1h30m", HOUR + 30 * MIN),
        ("1.5h", 1.5 * HOUR),
        ("2d12h", 2.5 * DAY),
        ("1h 30m", HOUR + 30 * MIN),
        ("500ms", 0.5),
        (" 45s ", 45.0),
        ("0.0", 0.0),
    ],
)
def test_parse_duration_valid(text: str, expected: float) -> None:
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-1s",
        "-5",
        "abc",
        "h",
        "1h30",
        "90",
        "1.5",
        "5x",
        "1H",
        "1.2.3s",
        "s1",
        "1e3s",
        "9" * 5000 + "w",
    ],
)
def test_parse_duration_invalid(text: str) -> None:
    with pytest.raises(InvalidError) as info:
        parse_duration(text, what="keep-duration")
    assert "keep-duration" in str(info.value)
    assert f"'{text}'" in str(info.value)


def test_parse_duration_too_large() -> None:
    with pytest.raises(InvalidError, match="too large"):
        parse_duration("9" * 60 + "w")


@given(st.text())
def test_parse_duration_raises_only_invalid_error(text: str) -> None:
    try:
        value = parse_duration(text)
    except InvalidError:
        return
    assert value >= 0


@given(st.integers(min_value=1, max_value=int(MAX_DURATION)))
def test_parse_duration_bare_number_is_refused_saying_what_to_write(n: int) -> None:
    with pytest.raises(InvalidError) as info:
        parse_duration(str(n), what="--keep-duration")
    assert f"missing unit: write {n}s, {n}m or {n}h" in str(info.value)
    assert parse_duration(f"{n}s") == float(n)
