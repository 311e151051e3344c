"""The exact scan: blockwise row scores and top-k selection with its presampled fast path."""

from __future__ import annotations

import numpy as np
import pytest

from cfgclone.similarity.scan import row_scores, top_k


def _expected(scores: np.ndarray, k: int) -> list[int]:
    """The k largest finite scores by a full sort, ties by position."""
    order = [int(i) for i in np.argsort(-scores, kind="stable")]
    return [i for i in order if scores[i] > -np.inf][:k]


@pytest.mark.parametrize("size", [1, 10, 5_000, 50_000])
@pytest.mark.parametrize("k", [1, 10, 1000])
def test_top_k_equals_a_full_sort(size: int, k: int) -> None:
    scores = np.random.default_rng(size + k).standard_normal(size).astype(np.float32)
    assert list(top_k(scores, k)) == _expected(scores, min(k, size))


def test_top_k_survives_scores_masked_out_and_clustered_at_the_top() -> None:
    rng = np.random.default_rng(0)
    scores = rng.standard_normal(60_000).astype(np.float32)
    scores[rng.random(60_000) < 0.995] = -np.inf  # a selective label filter
    chosen = top_k(scores, 50)
    assert list(chosen) == _expected(scores, 50)
    skewed = np.full(60_000, 0.5, dtype=np.float32)
    skewed[:7] = np.arange(7, dtype=np.float32) + 1.0  # fewer clear winners than k
    chosen = top_k(skewed, 10)
    assert list(chosen[:7]) == [6, 5, 4, 3, 2, 1, 0]
    assert len(set(chosen[7:].tolist())) == 3
    assert np.all(skewed[chosen[7:]] == np.float32(0.5))


@pytest.mark.parametrize("period", [2, 3, 4, 24])
def test_top_k_is_exact_when_a_filter_leaves_every_nth_row(period: int) -> None:
    scores = np.random.default_rng(period).standard_normal(100_000).astype(np.float32)
    scores[np.arange(100_000) % period != 1] = -np.inf
    assert list(top_k(scores, 10)) == _expected(scores, 10)


def test_rows_left_out_are_never_returned_even_when_fewer_than_k_remain() -> None:
    scores = np.full(30_000, -np.inf, dtype=np.float32)
    scores[[5, 17_000, 29_999]] = [0.1, 0.9, 0.5]
    assert list(top_k(scores, 10)) == [17_000, 29_999, 5]
    assert list(top_k(scores[:100], 10)) == [5]
    assert list(top_k(np.full(4, -np.inf, dtype=np.float32), 2)) == []


@pytest.mark.parametrize("size", [0, 1, 2_047, 2_048, 10_001])
def test_row_scores_equal_one_matrix_vector_product(size: int) -> None:
    rng = np.random.default_rng(size)
    rows = rng.standard_normal((size, 17)).astype(np.float32)
    query = rng.standard_normal(17).astype(np.float32)
    np.testing.assert_allclose(row_scores(rows, query), rows @ query, rtol=1e-6, atol=1e-6)
