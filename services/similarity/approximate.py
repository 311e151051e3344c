"""The approximate search behind nearest-system queries on large fleets.

FAISS inverted lists over scalar-quantised rows: the fleet's prepared rows are
clustered into lists by k-means, each row stored 8-bit quantised in the list of
its nearest centre, and a query reads the rows of the lists whose centres are
nearest to it. It only proposes a short list of row positions: the caller
re-ranks them exactly, so recall is all this module can lose.

Chosen over HNSW graphs after measuring three candidates on the fleets of
benchmarks/similarity.py, on two shared, busy cores, each re-ranked exactly from
a short list of 100:

- FAISS IVF, 8-bit rows (100k, 1024 lists, 32 probes): built in 11 s, 16 MB,
  recall@10 0.998, 0.996 with a label filter applied inside the search;
- FAISS HNSW, 8-bit rows (100k, M=16, efSearch 128): built in 128 s, 29 MB,
  recall 0.995, 0.98 with the same filter;
- USearch HNSW, i8 (200k, connectivity 16, expansion 64): built in 48 s,
  120 MB, recall 0.91, and no label predicate in its Python search, so a filter
  means over-fetching (0.95 with four times the short list).

Inverted lists build an order of magnitude faster (k-means on a sample, then one
pass), need no per-row links (a quantised million of 237-long rows is 248 MB) and check a
bitmap of allowed rows (label filter, replaced rows) as the lists are read, so a
filtered query needs no over-fetch.

This module knows rows and positions only; how rows are weighted and scored is
the embedding space's business (space.py), so the two change independently.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

from .settings import ApproximateSettings

__all__ = ["AllowedRows", "ApproximateRows", "clear_rows", "pack_rows"]

_NO_CANDIDATES = np.zeros(0, dtype=np.intp)
# FAISS compares quantised rows with SIMD only when their length is a multiple of 8;
# rows are padded with zeros to one (inner products do not change): 2.5 times faster
# at 150 dimensions, measured.
_SIMD_WIDTH = 8
# Whether the calling thread has limited FAISS to itself: OpenMP keeps the thread count
# per calling thread, and a search of one query row gains nothing from a second thread
# but may wait for one on a busy core.
_QUERY_THREADS = threading.local()


@dataclass(frozen=True, slots=True, eq=False)
class AllowedRows:
    """Rows a query may return, as FAISS reads them: a bitmap and its selector."""

    bits: NDArray[np.uint8]
    """One bit per row of the indexed segment, little-endian; the selector reads it."""
    count: int
    """How many rows are allowed."""
    selector: Any
    """The faiss.IDSelectorBitmap over `bits`."""

    @classmethod
    def of(cls, bits: NDArray[np.uint8], count: int) -> AllowedRows:
        """Allowed rows from a packed bitmap (`pack_rows`) holding `count` set bits."""
        bits.flags.writeable = False
        return cls(bits, count, faiss.IDSelectorBitmap(bits.size * 8, faiss.swig_ptr(bits)))

    def allows(self, positions: NDArray[np.intp]) -> NDArray[np.bool_]:
        """Whether each position is allowed."""
        flags: NDArray[np.bool_] = ((self.bits[positions >> 3] >> (positions & 7)) & 1).astype(
            np.bool_
        )
        return flags


def pack_rows(mask: NDArray[np.bool_]) -> NDArray[np.uint8]:
    """A row mask as the bitmap `AllowedRows` takes."""
    bits: NDArray[np.uint8] = np.packbits(mask, bitorder="little")
    return bits


def clear_rows(bits: NDArray[np.uint8], positions: NDArray[np.intp]) -> None:
    """Clears the bits of `positions` in a packed bitmap, in place."""
    np.bitwise_and.at(bits, positions >> 3, ~(np.uint8(1) << (positions & 7).astype(np.uint8)))


class ApproximateRows:
    """An inverted-list index over prepared rows; proposes candidate positions."""

    __slots__ = ("_index", "_lists", "_padding", "_settings", "_size")

    def __init__(
        self, index: Any, lists: int, size: int, padding: int, settings: ApproximateSettings
    ) -> None:
        self._index = index
        self._lists = lists
        self._size = size
        self._padding = padding
        self._settings = settings

    @classmethod
    def build(cls, rows: NDArray[np.float32], settings: ApproximateSettings) -> ApproximateRows:
        """Trains lists and quantiser on a sample of the rows, then adds every row.

        Positions are row numbers of `rows`. The result is read-only: queries may run
        from any thread.
        """
        size, dimension = rows.shape
        padding = -dimension % _SIMD_WIDTH
        if padding:
            rows = np.pad(rows, ((0, 0), (0, padding)))
            dimension += padding
        # FAISS wants about 39 training rows per list; fewer lists than that would be untrained.
        lists = max(1, min(size // 40, round(settings.lists_per_sqrt * math.sqrt(size))))
        index = faiss.index_factory(
            dimension, f"IVF{lists},{settings.quantiser}", faiss.METRIC_INNER_PRODUCT
        )
        sample = min(size, settings.train_per_list * lists)
        rng = np.random.default_rng(size)
        chosen = np.sort(rng.choice(size, size=sample, replace=False))
        faiss.omp_set_num_threads(settings.build_threads)
        try:
            index.train(np.ascontiguousarray(rows[chosen]))
            index.add(rows)
        finally:
            faiss.omp_set_num_threads(1)
        return cls(index, lists, size, padding, settings)

    def __len__(self) -> int:
        return self._size

    @property
    def lists(self) -> int:
        """Number of inverted lists."""
        return self._lists

    @property
    def nbytes(self) -> int:
        """Bytes of quantised rows, their ids and the list centres."""
        code_size = int(self._index.code_size)
        dimension = int(self._index.d)
        return self._size * (code_size + 8) + self._lists * dimension * 4

    def candidates(
        self, query: NDArray[np.float32], count: int, allowed: AllowedRows | None
    ) -> NDArray[np.intp]:
        """Positions of up to `count` rows likely nearest to the prepared query row.

        With `allowed`, only those rows are proposed. A filter that keeps a fraction
        f of the rows leaves f of each list to choose from, so the lists read grow
        by f^(-1/8) to keep the nearest allowed rows within reach: the nearest
        neighbours sit in the nearest lists, and labels that follow the fleet's
        structure (a role, a site) leave those lists fuller than f. Measured at a
        million systems with a filter keeping a quarter at random (the hardest case
        for this rule), 112 probes unfiltered: recall@10 0.9935 reading 112 lists,
        0.9995 with 128, 1.0 with 134 (this rule) and with 160 (f^(-1/4)); p99 1.91
        ms with 134 and 2.95 ms with 160 on a busy machine.
        """
        if not getattr(_QUERY_THREADS, "single", False):
            faiss.omp_set_num_threads(1)
            _QUERY_THREADS.single = True
        probes = self._settings.probes
        if allowed is not None:
            if allowed.count == 0:
                return _NO_CANDIDATES
            probes = math.ceil(probes * (self._size / allowed.count) ** 0.125)
        probes = min(probes, self._lists)
        params = faiss.SearchParametersIVF()
        params.nprobe = probes
        if allowed is not None:
            params.sel = allowed.selector
        row = np.zeros((1, query.shape[0] + self._padding), dtype=np.float32)  # np.pad: 10x slower
        row[0, : query.shape[0]] = query
        _, found = self._index.search(row, count, params=params)
        positions: NDArray[np.intp] = found[0][found[0] >= 0].astype(np.intp)
        return positions
