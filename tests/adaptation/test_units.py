"""Sizes and durations read and written the way PostgreSQL writes them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cfgclone.adaptation import (
    format_bytes,
    format_duration,
    parse_bytes,
    parse_duration,
)

GiB = 1 << 30


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("16GB", 16 * GiB),
        ("512MB", 512 << 20),
        ("8kB", 8192),
        ("1TB", 1 << 40),
        ("100B", 100),
        ("128 MB", 128 << 20),
        ("1.5GB", 1536 << 20),
    ],
)
def test_sizes_count_in_multiples_of_1024(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


def test_a_bare_number_counts_the_default_unit() -> None:
    assert parse_bytes("16384", default_unit="8kB") == 128 << 20
    assert parse_bytes("64", default_unit="kB") == 64 << 10


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("200ms", timedelta(milliseconds=200)),
        ("5s", timedelta(seconds=5)),
        ("1min", timedelta(minutes=1)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("250us", timedelta(microseconds=250)),
        ("30", timedelta(milliseconds=30)),
    ],
)
def test_durations_read_postgresql_units(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_values_are_written_in_the_largest_exact_unit() -> None:
    assert format_bytes(16 * GiB) == "16GB"
    assert format_bytes(1536 << 20) == "1536MB"
    assert format_bytes(100) == "100B"
    assert format_duration(timedelta(minutes=1)) == "1min"
    assert format_duration(timedelta(seconds=90)) == "90s"
    assert format_duration(timedelta(milliseconds=200)) == "200ms"


def test_units_are_case_sensitive_and_a_near_miss_is_named() -> None:
    with pytest.raises(ValueError, match=r"'gb' is not a size unit \(did you mean GB\?\)"):
        parse_bytes("16gb")
    with pytest.raises(ValueError, match=r"did you mean GB\?"):
        parse_bytes("16GiB")
    with pytest.raises(ValueError, match="use one of us, ms, s, min, h, d"):
        parse_duration("5sec")


def test_text_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(ValueError, match="is not a number with an optional unit"):
        parse_bytes("lots")
