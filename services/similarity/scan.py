"""The exact scan behind nearest-system queries: scores of every row, then the top k."""

from __future__ import annotations

import functools
import math

import numpy as np
from numpy.typing import NDArray

__all__ = ["row_scores", "top_k"]

# Rows per block of the matrix-vector product (2048 x 150 floats, about 1.2 MB): small
# enough that OpenBLAS keeps each block on the calling thread. The exact scan runs on
# fleets below the approximate index's switch-over size, on the delta and on rows a
# selective label filter keeps, a few tens of thousands of rows at most, which one core
# scans in about a millisecond; waiting for a second, busy core costs more than that
# (a 25k-row scan measured 1.2 ms of CPU and 4 ms wall in 2048-row blocks, 5 ms of CPU
# and 22 ms wall in one product, on two cores kept busy by other work).
_BLOCK_ROWS = 2_048
# Scores sampled to guess a cut-off; enough for the guess to hold almost always.
_SAMPLE = 4_096
# The cut-off aims at this many times k candidates, so it rarely keeps fewer than k.
_MARGIN = 4


def row_scores(rows: NDArray[np.float32], query: NDArray[np.float32]) -> NDArray[np.float32]:
    """`rows @ query`, computed block by block on the calling thread."""
    scores = np.empty(rows.shape[0], dtype=np.float32)
    for start in range(0, rows.shape[0], _BLOCK_ROWS):
        stop = start + _BLOCK_ROWS
        np.matmul(rows[start:stop], query, out=scores[start:stop])
    return scores


def top_k(scores: NDArray[np.float32], k: int) -> NDArray[np.intp]:
    """Positions of the k largest scores, largest first.

    Which of several rows tied at the k-th place comes back is unspecified.

    A score of -inf marks a row left out (by a label filter, or as the query itself)
    and is never returned, so fewer than k positions come back when fewer rows remain.

    np.argpartition over a million scores costs more than the matrix-vector product
    that made them, so a cut-off is first read from a sample of the scores: every score
    at or above it is a candidate, and if there are at least k candidates the k largest
    are among them (the k-th largest overall is at least the cut-off), so the answer
    stays exact. Only when the guess keeps fewer than k does the full partition run.
    The sample is at random positions: a stride could line up with a periodic label
    (every fourth system a database) and see nothing but left-out rows.
    """
    size = scores.shape[0]
    candidates: NDArray[np.intp] | None = None
    if size > 4 * _SAMPLE and k < size:
        sample = scores[_sample_positions(size)]
        rank = min(sample.size, math.ceil(_MARGIN * k * sample.size / size) + 1)
        cut = np.partition(sample, sample.size - rank)[sample.size - rank]
        kept = np.flatnonzero(scores > cut if cut == -np.inf else scores >= cut)
        if kept.size >= k or cut == -np.inf:
            candidates = kept
    if candidates is None:
        candidates = np.flatnonzero(scores > -np.inf)
    if candidates.size > k:
        part = np.argpartition(scores[candidates], candidates.size - k)[-k:]
        candidates = np.sort(candidates[part])
    order = np.argsort(-scores[candidates], kind="stable")
    return candidates[order]


@functools.lru_cache(maxsize=16)
def _sample_positions(size: int) -> NDArray[np.intp]:
    """Fixed random positions to sample the scores of `size` rows at."""
    positions = np.sort(np.random.default_rng(size).integers(0, size, _SAMPLE)).astype(np.intp)
    positions.flags.writeable = False
    return positions
