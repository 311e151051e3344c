"""Groups compared value by value: a distance per value, the same anywhere in the fleet's range."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cfgclone.similarity import GroupLayout, SimilarityIndex, SimilaritySettings

LAYOUT = GroupLayout.consecutive([("hardware", 3), ("curves", 4)])


def _index(
    hardware: list[list[float]], settings: SimilaritySettings | None = None
) -> SimilarityIndex:
    """One system per hardware row, named `s0`, `s1`, ...; curves alike for all."""
    rng = np.random.default_rng(0)
    index = SimilarityIndex(LAYOUT, settings)
    index.rebuild(
        (f"s{i}", np.concatenate((row, 1.0 + 0.01 * rng.standard_normal(4))), {})
        for i, row in enumerate(hardware)
    )
    return index


def test_a_value_a_range_apart_is_half_alike_and_equal_values_are_alike() -> None:
    # log2 cores 1..5, memory following them, one architecture; distances are in the
    # fleet's robust spreads, read back from the space.
    hardware = [[c, c + 1.0, 1.0] for c in (1.0, 2.0, 3.0, 4.0, 5.0)]
    index = _index(hardware)
    spread = index.snapshot().space.scaler.spread[0]
    same = index.compare("s2", "s2").group("hardware").similarity
    near = index.compare("s2", "s3").group("hardware").similarity
    expected = math.exp(-math.log(2.0) * (1.0 / spread) ** 2)  # one log2 unit apart
    assert same == pytest.approx(1.0, abs=1e-6)
    assert near == pytest.approx(expected, abs=0.005)


def test_a_doubling_counts_the_same_at_the_edge_of_the_fleet_as_in_its_middle() -> None:
    hardware = [[c, c + 1.0, 1.0] for c in (1.0, 2.0, 3.0, 4.0, 5.0)]
    index = _index(hardware)
    middle = index.compare("s2", "s3").group("hardware").similarity
    edge = index.compare("s0", "s1").group("hardware").similarity
    assert edge == pytest.approx(middle, abs=0.005)
    # And further apart is less alike, all the way.
    apart = [index.compare("s0", f"s{i}").group("hardware").similarity for i in range(5)]
    assert apart == sorted(apart, reverse=True)
    assert apart[-1] < 0.05


def test_a_value_the_whole_fleet_shares_does_not_make_pairs_more_alike() -> None:
    hardware = [[c, c + 1.0, 1.0] for c in (1.0, 2.0, 3.0, 4.0, 5.0)]
    shared = _index(hardware).compare("s0", "s1").group("hardware").similarity
    # The same pair when the third value differs as much as the other two do: had the
    # shared value counted, the first pair would be more alike than this one.
    varied = _index([[*row[:2], float(i)] for i, row in enumerate(hardware)])
    assert shared == pytest.approx(
        varied.compare("s0", "s1").group("hardware").similarity, abs=0.01
    )
    assert shared < 0.9


def test_by_direction_two_different_machines_look_alike_by_value_they_do_not() -> None:
    # Centred on the fleet, two machines above the median on both values point the same
    # way however far apart they are: alike by cosine, not by value.
    hardware = [[c, c, 1.0] for c in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)]
    by_value = _index(hardware).compare("s3", "s5").group("hardware").similarity
    cosine = SimilaritySettings(value_groups=frozenset())
    by_direction = _index(hardware, cosine).compare("s3", "s5").group("hardware").similarity
    assert by_direction > 0.85
    assert by_value < 0.5
