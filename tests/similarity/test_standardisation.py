"""Layouts, settings and the robust standardisation behind every score."""

from __future__ import annotations

import numpy as np
import pytest

from cfgclone.similarity import (
    EmbeddingSpace,
    GroupLayout,
    GroupSpan,
    SimilaritySettings,
    parse_label_selector,
)
from cfgclone.similarity.errors import InvalidQuery
from cfgclone.similarity.scaling import RobustScaler
from cfgclone.v1 import common_pb2


def test_a_layout_is_read_from_the_fingerprints_groups() -> None:
    groups = [
        common_pb2.EmbeddingGroup(name="hardware", offset=0, length=5),
        common_pb2.EmbeddingGroup(name="curves", offset=5, length=7),
    ]
    layout = GroupLayout.from_proto(groups)
    assert layout.names == ("hardware", "curves")
    assert layout.dimension == 12
    assert GroupLayout.from_proto(groups, dimension=14).dimension == 14


@pytest.mark.parametrize(
    ("groups", "dimension", "message"),
    [
        ((GroupSpan("a", 0, 4), GroupSpan("b", 3, 2)), 5, "overlap"),
        ((GroupSpan("a", 0, 4),), 3, "beyond"),
        ((GroupSpan("a", 0, 2), GroupSpan("a", 2, 2)), 4, "repeat"),
        ((), 4, "at least one group"),
    ],
)
def test_a_broken_layout_is_refused(
    groups: tuple[GroupSpan, ...], dimension: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        GroupLayout(groups, dimension)


def test_the_scaler_is_robust_to_an_outlier() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(100.0, 5.0, (1_000, 1))
    values[0, 0] = 1e9
    scaler = RobustScaler.fit(values, clip=8.0, sample=10_000)
    assert scaler.centre[0] == pytest.approx(100.0, abs=1.0)
    assert scaler.spread[0] == pytest.approx(5.0, rel=0.15)
    assert scaler.transform(values)[0, 0] == pytest.approx(8.0)  # clipped


def test_a_dimension_nobody_varies_on_gets_a_usable_spread() -> None:
    values = np.zeros((50, 3))
    values[:, 0] = 7.0  # constant
    values[:45, 1] = 1.0  # constant for most, a few differ: IQR and MAD are 0
    values[45:, 1] = 3.0
    values[:, 2] = np.arange(50)
    scaler = RobustScaler.fit(values, clip=8.0, sample=1_000)
    assert np.all(np.isfinite(scaler.spread))
    assert np.all(scaler.spread > 0)
    assert scaler.spread[0] == 1.0
    assert scaler.spread[1] == pytest.approx(np.std(values[:, 1]))
    scaled = scaler.transform(values)
    assert np.all(np.isfinite(scaled))
    assert np.all(scaled[:, 0] == 0.0)


def test_prepared_rows_are_unit_length_even_on_the_median() -> None:
    layout = GroupLayout.consecutive([("hardware", 2), ("curves", 3)])
    settings = SimilaritySettings(group_weights={"hardware": 1.0, "curves": 3.0})
    raw = np.random.default_rng(1).standard_normal((101, 5))
    space = EmbeddingSpace.fit(layout, raw, settings)
    rows = space.prepare(np.vstack((raw, space.scaler.centre)))
    assert rows.dtype == np.float32
    assert rows.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-6)
    # Two systems exactly on the median are identical, not undefined.
    on_median = space.group_cosines(space.scaler.centre, space.scaler.centre[None, :])
    np.testing.assert_allclose(on_median, 1.0)
    np.testing.assert_allclose(space.weights, [0.25, 0.75])


def test_rows_and_group_cosines_follow_their_definition_on_any_layout() -> None:
    """Groups out of order, entries in no group and a group of weight 0: a batch is
    prepared and compared with a few whole-array calls, each group where it belongs."""
    layout = GroupLayout(
        (GroupSpan("curves", 9, 3), GroupSpan("hardware", 0, 4), GroupSpan("noise", 5, 2)), 13
    )
    weights = {"curves": 3.0, "hardware": 1.0, "noise": 0.0}
    # Every group compared by direction.
    settings = SimilaritySettings(group_weights=weights, value_groups=frozenset())
    rng = np.random.default_rng(4)
    raw = rng.standard_normal((60, 13)) * 10.0 ** rng.uniform(-2.0, 3.0, 13)
    space = EmbeddingSpace.fit(layout, raw, settings)
    scaled = space.scaler.transform(raw, np.float64)

    def spans(group: GroupSpan) -> tuple[np.ndarray, float]:
        anchor = space.anchor * np.sqrt(group.length)
        values = np.hstack((scaled[:, group.offset : group.stop], np.full((60, 1), anchor)))
        return values / np.linalg.norm(values, axis=1)[:, None], anchor

    expected_rows = np.hstack(
        [spans(group)[0] * np.sqrt(weights[group.name] / 4.0) for group in layout.groups[:2]]
    )
    np.testing.assert_allclose(space.prepare(raw), expected_rows, atol=1e-6)
    expected_cosines = np.column_stack(
        [spans(group)[0] @ spans(group)[0][7] for group in layout.groups]
    )
    np.testing.assert_allclose(space.group_cosines(raw[7], raw), expected_cosines, atol=1e-12)
    assert space.prepare(raw[:0]).shape == (0, 9)


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="clone_threshold"):
        SimilaritySettings(clone_threshold=1.2)
    with pytest.raises(ValueError, match="group_anchor"):
        SimilaritySettings(group_anchor=0.0)
    with pytest.raises(ValueError, match="max_k"):
        SimilaritySettings(max_k=0)


def test_label_selectors_parse_into_pairs() -> None:
    assert parse_label_selector("") == {}
    assert parse_label_selector("role=db, env = prod") == {"role": "db", "env": "prod"}
    for bad in ("role", "=db", "role=db,role=web"):
        with pytest.raises(InvalidQuery):
            parse_label_selector(bad)
