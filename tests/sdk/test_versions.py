"""Version ordering: semver where it applies, sane natural order elsewhere, never an error."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gdos_sdk import versions
from gdos_sdk.versions import is_valid_version, sort_versions, version_key


def test_all_is_sorted_and_complete() -> None:
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions, each alphabetical.
    names = versions.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    assert all(hasattr(versions, n) for n in names)


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("1.2.9", "1.2.10"),
        ("1.9", "1.10"),
        ("1.0.0-rc.1", "1.0.0"),
        ("1.0.0-alpha", "1.0.0-beta"),
        ("1.0.0-alpha", "1.0.0-alpha.1"),
        ("1.0.0-alpha.1", "1.0.0-alpha.beta"),  # numeric identifiers before words
        ("1.0.0-rc.2", "1.0.0-rc.10"),
        ("1.0.0-rc9", "1.0.0-rc10"),  # natural order inside a word
        ("1.0-final", "1.0"),
        ("2023.12.31", "2024.01.15"),
        ("0.9.9", "1.0.0-rc.1"),
        ("1.0.0", "1.0.1-rc.1"),
        ("v1.2", "1.10"),
    ],
)
def test_ordering(older: str, newer: str) -> None:
    assert version_key(older) < version_key(newer)
    assert sort_versions([newer, older]) == [older, newer]


@pytest.mark.parametrize(
    ("a", "b"),
    [("v1.0", "1.0"), ("1.0", "1.0.0"), ("1.0.0+build.7", "1.0.0"), ("V2", "2.0.0")],
)
def test_equivalent_spellings(a: str, b: str) -> None:
    assert version_key(a) == version_key(b)


def test_sort_newest_first_and_deterministic_ties() -> None:
    given_order = ["1.0.0", "1.2.10", "v1.0", "1.0.0-rc.1", "1.2.9", "1.10.0"]
    shuffled = given_order[:]
    random.Random(4).shuffle(shuffled)
    assert sort_versions(shuffled, newest_first=True) == [
        "1.10.0",
        "1.2.10",
        "1.2.9",
        "v1.0",
        "1.0.0",
        "1.0.0-rc.1",
    ]
    assert sort_versions(shuffled) == sort_versions(given_order)


@given(st.lists(st.text(max_size=12), max_size=8))
def test_never_raises_and_is_a_total_order(items: list[str]) -> None:
    once = sort_versions(items)
    assert sort_versions(list(reversed(items))) == once
    assert sorted(once) == sorted(items)


@pytest.mark.parametrize("odd", ["", "latest", "1..2", "-", "+", "1.0-", "1.x.3", "²", "v", "1.0a"])
def test_odd_strings_get_a_key(odd: str) -> None:
    key = version_key(odd)
    assert key == version_key(odd)
    assert isinstance(key < version_key("1.0"), bool)


@pytest.mark.parametrize("good", ["1", "0.1.0", "v1.2.3", "1.0.0-rc.1+build_7", "2024.01.15"])
def test_valid_versions(good: str) -> None:
    assert is_valid_version(good)


@pytest.mark.parametrize(
    "bad",
    ["", "v", "vx1", "latest", "-1", ".1", "1 0", "1/0", "1.0\n", "1" * 65, "é1", "1.0é"],
)
def test_invalid_versions(bad: str) -> None:
    assert not is_valid_version(bad)


def test_version_length_limit_is_inclusive() -> None:
    assert is_valid_version("1" * 64)
