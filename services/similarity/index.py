"""The similarity index: nearest systems, pair comparisons and cohorts over the fleet.

Readers never wait for writers. Every write builds a new immutable `FleetSnapshot`
and swaps it in with one attribute assignment; a query reads the attribute once and
answers entirely from that snapshot, so it sees the fleet either before or after a
write, never half of it, and a batch written with `update` lands all at once.

Copying a million rows on every upsert would make writes slow, so a snapshot is a
large base segment, shared between snapshots, plus a small delta segment that is
rebuilt on each write: an upsert appends to the delta and hides the system's old
base row, a removal hides it. When the delta and the hidden rows outgrow
`SimilaritySettings.delta_fraction` of the fleet, the whole index is rebuilt and
the fleet's medians and spreads are refitted. Rows of the delta are standardised
with the medians and spreads of the base, so a query compares every system in one
space.

A base segment of at least `ApproximateSettings.min_systems` systems is searched
through an approximate index (approximate.py) that proposes a short list, which is
then re-ranked exactly, so the scores and explanations returned are the exact
ones; label filters and hidden rows are applied inside that index. Smaller
fleets, the delta, and label filters that keep fewer rows than the switch-over
size are scanned exactly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from .approximate import AllowedRows, ApproximateRows, clear_rows, pack_rows
from .cohorts import CohortAssignment, Cohorts
from .errors import InvalidEmbedding, InvalidQuery, UnknownSystem
from .labels import Labels, check_selector, freeze_labels
from .layout import GroupLayout
from .scan import row_scores, top_k
from .scores import Similarity, check_threshold, explain_pair, explain_rows
from .settings import ApproximateSettings, SimilaritySettings
from .space import EmbeddingSpace, as_embedding, fits_float32

__all__ = ["FleetEntry", "FleetSnapshot", "SimilarityIndex"]

logger = logging.getLogger(__name__)

_NEG_INF = np.float32(-np.inf)
_NO_ROWS = np.zeros(0, dtype=np.intp)
_QUERY_NAME = "query"
# Label selectors whose allowed rows or prepared rows a segment or snapshot keeps at hand.
_CACHED_SELECTORS = 16

_SelectorKey = tuple[tuple[str, str], ...]


class FleetEntry(NamedTuple):
    """One system as the index takes it: id, raw embedding and labels."""

    system_id: str
    """System id, for example `web-01`."""
    embedding: Sequence[float] | NDArray[np.floating[Any]]
    """Raw embedding, `Fingerprint.embedding`."""
    labels: Mapping[str, str] = MappingProxyType({})
    """Labels used by selectors, for example {"role": "db"}."""


@dataclass(frozen=True, slots=True, eq=False)
class _LabelColumn:
    """One label key over a segment: a code per row, and masks for few-valued keys."""

    codes: NDArray[np.signedinteger[Any]]
    """Code of each row's value (-1: the row has no such label), in the narrowest type."""
    vocabulary: Mapping[str, int]
    masks: Mapping[str, NDArray[np.bool_]]

    def mask(self, value: str) -> NDArray[np.bool_] | None:
        """Rows carrying the value; None when no row does."""
        precomputed = self.masks.get(value)
        if precomputed is not None:
            return precomputed
        code = self.vocabulary.get(value)
        return None if code is None else self.codes == code

    @property
    def nbytes(self) -> int:
        return self.codes.nbytes + sum(mask.nbytes for mask in self.masks.values())


@dataclass(frozen=True, slots=True, eq=False)
class _Segment:
    """Immutable rows of some systems: ids, raw embeddings, prepared rows and labels.

    A segment of at least `ApproximateSettings.min_systems` rows gets an approximate
    index instead of its prepared rows (which would double its memory): queries take a
    short list from the index and prepare only those rows from the raw embeddings.
    """

    ids: tuple[str, ...]
    positions: Mapping[str, int]
    raw: NDArray[np.float32]
    rows: NDArray[np.float32] | None
    labels: tuple[Labels, ...]
    columns: Mapping[str, _LabelColumn]
    approximate: ApproximateRows | None
    cache: dict[tuple[str, _SelectorKey], Any]
    """Packed label selections and the prepared rows of selective ones, made on first use."""

    @classmethod
    def build(
        cls,
        ids: Sequence[str],
        raw: NDArray[np.float32],
        labels: Sequence[Labels],
        space: EmbeddingSpace,
        mask_max_values: int,
        approximate: ApproximateSettings | None = None,
    ) -> _Segment:
        prepared = space.prepare(raw)
        raw = np.ascontiguousarray(raw, dtype=np.float32)
        raw.flags.writeable = False
        prepared.flags.writeable = False
        index = None
        rows: NDArray[np.float32] | None = prepared
        if approximate is not None and len(ids) >= approximate.min_systems:
            index = ApproximateRows.build(prepared, approximate)
            rows = None
            # Queries of an indexed segment read a selector's rows once, as a cached
            # bitmap; masks kept per label value would only cost a byte a row each.
            mask_max_values = 0
        return cls(
            ids=tuple(ids),
            positions=MappingProxyType({system_id: i for i, system_id in enumerate(ids)}),
            raw=raw,
            rows=rows,
            labels=tuple(labels),
            columns=MappingProxyType(_label_columns(labels, mask_max_values)),
            approximate=index,
            cache={},
        )

    def __len__(self) -> int:
        return len(self.ids)

    def selection(self, selector: Labels) -> NDArray[np.bool_] | None:
        """Rows matching every pair of the selector; None when the selector is empty."""
        if not selector:
            return None
        combined: NDArray[np.bool_] | None = None
        for key, value in selector.items():
            column = self.columns.get(key)
            mask = None if column is None else column.mask(value)
            if mask is None:
                return np.zeros(len(self.ids), dtype=np.bool_)
            combined = mask if combined is None else combined & mask
        return combined

    def prepared(self, space: EmbeddingSpace) -> NDArray[np.float32]:
        """Prepared rows of every system of the segment, kept or made now."""
        return space.prepare(self.raw) if self.rows is None else self.rows

    def packed_selection(self, selector: Labels) -> tuple[NDArray[np.uint8], int]:
        """Rows matching the selector (every row for an empty one) as a bitmap, and how many."""
        key = ("bits", _selector_key(selector))
        found: tuple[NDArray[np.uint8], int] | None = self.cache.get(key)
        if found is None:
            mask = self.selection(selector)
            if mask is None:
                mask = np.ones(len(self.ids), dtype=np.bool_)
            found = (pack_rows(mask), int(np.count_nonzero(mask)))
            self._keep(key, found)
        return found

    def selected_rows(
        self, selector: Labels, space: EmbeddingSpace
    ) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
        """Positions and prepared rows of the rows a (selective) selector keeps."""
        key = ("rows", _selector_key(selector))
        found: tuple[NDArray[np.intp], NDArray[np.float32]] | None = self.cache.get(key)
        if found is None:
            mask = self.selection(selector)
            positions = np.arange(len(self.ids)) if mask is None else np.flatnonzero(mask)
            found = (positions, space.prepare(self.raw[positions]))
            self._keep(key, found)
        return found

    def _keep(self, key: tuple[str, _SelectorKey], value: Any) -> None:
        if len(self.cache) >= 2 * _CACHED_SELECTORS:
            self.cache.clear()
        self.cache[key] = value

    @property
    def nbytes(self) -> int:
        return (
            self.raw.nbytes
            + (0 if self.rows is None else self.rows.nbytes)
            + sum(column.nbytes for column in self.columns.values())
            + (0 if self.approximate is None else self.approximate.nbytes)
        )


def _selector_key(selector: Labels) -> _SelectorKey:
    return tuple(sorted(selector.items()))


def _label_columns(labels: Sequence[Labels], mask_max_values: int) -> dict[str, _LabelColumn]:
    """Code columns per label key, built once per distinct label set (they are shared)."""
    size = len(labels)
    by_set: dict[int, tuple[Labels, list[int]]] = {}
    for position, label_set in enumerate(labels):
        if label_set:
            by_set.setdefault(id(label_set), (label_set, []))[1].append(position)
    codes: dict[str, NDArray[np.int32]] = {}
    vocabularies: dict[str, dict[str, int]] = {}
    for label_set, positions in by_set.values():
        chosen = np.asarray(positions, dtype=np.intp)
        for key, value in label_set.items():
            if key not in codes:
                codes[key] = np.full(size, -1, dtype=np.int32)
                vocabularies[key] = {}
            vocabulary = vocabularies[key]
            codes[key][chosen] = vocabulary.setdefault(value, len(vocabulary))
    columns: dict[str, _LabelColumn] = {}
    for key, wide in codes.items():
        vocabulary = vocabularies[key]
        column = wide.astype(np.min_scalar_type(-len(vocabulary)))
        column.flags.writeable = False
        masks: dict[str, NDArray[np.bool_]] = {}
        if len(vocabulary) <= mask_max_values:
            for value, code in vocabulary.items():
                mask = column == code
                mask.flags.writeable = False
                masks[value] = mask
        columns[key] = _LabelColumn(column, MappingProxyType(vocabulary), MappingProxyType(masks))
    return columns


def _empty_segment(space: EmbeddingSpace) -> _Segment:
    raw = np.zeros((0, space.layout.dimension), dtype=np.float32)
    return _Segment.build((), raw, (), space, 0)


_Change = tuple[str, tuple[NDArray[np.float32], Labels] | None]
"""An upsert (system id, raw embedding and labels) or a removal (system id, None)."""


def _apply(
    snapshot: FleetSnapshot, changes: Iterable[_Change]
) -> tuple[dict[str, tuple[NDArray[np.float32], Labels]], set[int], int]:
    """The snapshot's delta and hidden base rows after the changes, in order, and how many
    removals took out a system that was there."""
    base, delta = snapshot._base, snapshot._delta
    pending = {system_id: (delta.raw[i], delta.labels[i]) for i, system_id in enumerate(delta.ids)}
    dead = set(snapshot._dead)
    hits = 0
    for system_id, entry in changes:
        position = base.positions.get(system_id)
        if entry is None:
            hits += system_id in pending or (position is not None and position not in dead)
            pending.pop(system_id, None)
        else:
            pending[system_id] = entry
        if position is not None:
            dead.add(position)
    return pending, dead, hits


def _check_k(k: int, max_k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise InvalidQuery(f"k must be a whole number from 1 to {max_k}, not {k!r}")
    if not 1 <= k <= max_k:
        raise InvalidQuery(f"k must be from 1 to {max_k}, not {k}")
    return int(k)


def _check_system_id(system_id: object) -> str:
    if not isinstance(system_id, str) or not system_id:
        raise InvalidEmbedding(f"a system id must be a non-empty string, not {system_id!r}")
    return system_id


class FleetSnapshot:
    """The fleet as it was at one moment. Immutable: safe to query from any thread."""

    __slots__ = (
        "_allowed",
        "_base",
        "_cohort_lock",
        "_cohorts",
        "_dead",
        "_dead_rows",
        "_delta",
        "_generation",
        "_settings",
        "_size",
        "_space",
    )

    def __init__(
        self,
        *,
        generation: int,
        space: EmbeddingSpace,
        settings: SimilaritySettings,
        base: _Segment,
        dead: frozenset[int],
        delta: _Segment,
    ) -> None:
        self._generation = generation
        self._space = space
        self._settings = settings
        self._base = base
        self._dead = dead
        self._dead_rows = np.fromiter(sorted(dead), dtype=np.intp, count=len(dead))
        self._delta = delta
        self._size = len(base) - len(dead) + len(delta)
        self._cohorts: Cohorts | None = None
        self._cohort_lock = threading.Lock()
        self._allowed: dict[_SelectorKey, AllowedRows] = {}

    @property
    def generation(self) -> int:
        """Increases by one with every write to the index."""
        return self._generation

    @property
    def space(self) -> EmbeddingSpace:
        """The standardisation and weights this snapshot compares in."""
        return self._space

    @property
    def approximate(self) -> bool:
        """Whether nearest-system queries take a short list from an approximate index."""
        return self._base.approximate is not None

    def __len__(self) -> int:
        return self._size

    def __contains__(self, system_id: object) -> bool:
        return isinstance(system_id, str) and self._locate(system_id) is not None

    def system_ids(self) -> Iterator[str]:
        """Ids of every system in the snapshot."""
        dead = self._dead
        for position, system_id in enumerate(self._base.ids):
            if position not in dead:
                yield system_id
        yield from self._delta.ids

    def embedding(self, system_id: str) -> NDArray[np.float32]:
        """The raw embedding the index holds for a system (a read-only view)."""
        segment, position = self._require(system_id)
        row: NDArray[np.float32] = segment.raw[position]
        return row

    def labels(self, system_id: str) -> Labels:
        """The labels the index holds for a system."""
        segment, position = self._require(system_id)
        return segment.labels[position]

    def nearest(
        self,
        system_id: str,
        k: int,
        *,
        labels: Mapping[str, str] | None = None,
        threshold: float | None = None,
    ) -> list[Similarity]:
        """The k systems most alike to a system of the fleet, nearest first, itself excluded.

        `labels` keeps only systems carrying every pair given. Each answer is explained
        and decided against `threshold` (default: the clone threshold setting). An
        empty fleet answers with an empty list: while the index is still being loaded
        at start, a caller should get "nothing yet", not "no such system".
        """
        k, selector, threshold = self._check_query(k, labels, threshold)
        if self._size == 0:
            return []
        segment, position = self._require(system_id)
        return self._search(segment.raw[position], k, selector, threshold, system_id, system_id)

    def nearest_to_embedding(
        self,
        embedding: Sequence[float] | NDArray[np.floating[Any]],
        k: int,
        *,
        labels: Mapping[str, str] | None = None,
        threshold: float | None = None,
    ) -> list[Similarity]:
        """The k systems most alike to a raw embedding (for example of a new system)."""
        k, selector, threshold = self._check_query(k, labels, threshold)
        vector = as_embedding(embedding, self._space.layout.dimension, InvalidQuery)
        if self._size == 0:
            return []
        return self._search(vector, k, selector, threshold, _QUERY_NAME, None)

    def compare(self, first: str, second: str, *, threshold: float | None = None) -> Similarity:
        """How alike two systems of the fleet are, per group, with the clone decision."""
        threshold = self._threshold(threshold)
        a_segment, a_position = self._require(first)
        b_segment, b_position = self._require(second)
        cosines = self._space.group_cosines(
            a_segment.raw[a_position], b_segment.raw[b_position][None, :]
        )
        return explain_pair(
            first, second, self._space.layout.names, self._space.weights, cosines[0], threshold
        )

    def cohorts(self) -> Cohorts:
        """Cohorts of this snapshot's fleet, clustered on first use and then kept.

        Clustering a large fleet takes seconds; it runs at most once per snapshot, and
        concurrent callers wait for the one run instead of repeating it.
        """
        with self._cohort_lock:
            if self._cohorts is None:
                ids, rows, raw = self._live()
                self._cohorts = Cohorts.fit(ids, rows, raw, self._space, self._settings.cohorts)
            return self._cohorts

    def cohort_of(self, system_id: str) -> CohortAssignment:
        """The cohort a system of the fleet belongs to, with its similarity to the centre."""
        cohorts = self.cohorts()
        cohort = cohorts.cohort_of(system_id)
        assigned = cohorts.assign(self.embedding(system_id))
        return CohortAssignment(cohort, assigned.similarity)

    def assign_cohort(
        self, embedding: Sequence[float] | NDArray[np.floating[Any]]
    ) -> CohortAssignment:
        """The cohort a new system with this raw embedding would join."""
        vector = as_embedding(embedding, self._space.layout.dimension, InvalidQuery)
        return self.cohorts().assign(vector)

    def memory_bytes(self) -> int:
        """Bytes held in the snapshot's arrays (rows, raw embeddings, label columns)."""
        return self._base.nbytes + self._delta.nbytes + self._dead_rows.nbytes

    def _check_query(
        self, k: int, labels: Mapping[str, str] | None, threshold: float | None
    ) -> tuple[int, Labels, float]:
        return (
            _check_k(k, self._settings.max_k),
            check_selector(labels),
            self._threshold(threshold),
        )

    def _threshold(self, threshold: float | None) -> float:
        return self._settings.clone_threshold if threshold is None else check_threshold(threshold)

    def _locate(self, system_id: str) -> tuple[_Segment, int] | None:
        position = self._delta.positions.get(system_id)
        if position is not None:
            return self._delta, position
        position = self._base.positions.get(system_id)
        if position is not None and position not in self._dead:
            return self._base, position
        return None

    def _require(self, system_id: str) -> tuple[_Segment, int]:
        found = self._locate(system_id)
        if found is None:
            raise UnknownSystem(system_id)
        return found

    def _search(
        self,
        vector: NDArray[np.float32],
        k: int,
        selector: Labels,
        threshold: float,
        query_name: str,
        exclude: str | None,
    ) -> list[Similarity]:
        """Exact top k of each segment, merged: a matrix-vector product over its rows, or
        for a base with an approximate index, over the short list the index proposes."""
        query = self._space.prepare(vector[None, :])[0]
        found: list[tuple[float, str, NDArray[np.float32]]] = []
        if self._base.approximate is not None:
            found.extend(self._approximate_top(query, k, selector, exclude))
        for segment, hidden in ((self._base, self._dead_rows), (self._delta, _NO_ROWS)):
            if not segment.ids or segment.rows is None:
                continue
            scores = row_scores(segment.rows, query)
            selected = segment.selection(selector)
            if selected is not None:
                scores = np.where(selected, scores, _NEG_INF)
            if hidden.size:
                scores[hidden] = _NEG_INF
            if exclude is not None:
                own = segment.positions.get(exclude)
                if own is not None:
                    scores[own] = _NEG_INF
            for position in top_k(scores, k):
                found.append(
                    (float(scores[position]), segment.ids[position], segment.raw[position])
                )
        found.sort(key=lambda item: (-item[0], item[1]))
        del found[k:]
        if not found:
            return []
        cosines = self._space.group_cosines(vector, np.stack([raw for *_, raw in found]))
        answers = explain_rows(
            query_name,
            [system_id for _, system_id, _ in found],
            self._space.layout.names,
            self._space.weights,
            cosines,
            threshold,
        )
        answers.sort(key=lambda answer: (-answer.score, answer.second))
        return answers

    def _approximate_top(
        self, query: NDArray[np.float32], k: int, selector: Labels, exclude: str | None
    ) -> Iterator[tuple[float, str, NDArray[np.float32]]]:
        """Exact top k of the base among a short list from its approximate index.

        The short list is re-ranked on exactly prepared rows. A selector that keeps
        fewer rows than the switch-over size is answered by an exact scan of those rows
        instead, since a short list drawn from few allowed rows is where an
        approximate search loses recall.
        """
        base, settings = self._base, self._settings.approximate
        assert base.approximate is not None
        allowed = self._allowed_rows(selector)
        own = None if exclude is None else base.positions.get(exclude)
        if selector and allowed is not None and allowed.count < settings.min_systems:
            positions, rows = base.selected_rows(selector, self._space)
            scores = row_scores(rows, query)
            scores[~allowed.allows(positions)] = _NEG_INF
        else:
            positions = base.approximate.candidates(query, max(settings.shortlist, k + 1), allowed)
            if allowed is not None:
                positions = positions[allowed.allows(positions)]
            scores = self._space.prepare(base.raw[positions]) @ query
        if own is not None:
            scores[positions == own] = _NEG_INF
        for chosen in top_k(scores, k):
            position = positions[chosen]
            yield float(scores[chosen]), base.ids[position], base.raw[position]

    def _allowed_rows(self, selector: Labels) -> AllowedRows | None:
        """Base rows a query with this selector may return (not hidden, matching); None: all."""
        if not selector and not self._dead:
            return None
        key = _selector_key(selector)
        allowed = self._allowed.get(key)
        if allowed is None:
            bits, count = self._base.packed_selection(selector)
            if self._dead:
                bits = bits.copy()
                hidden = self._dead_rows
                count -= int(((bits[hidden >> 3] >> (hidden & 7)) & 1).sum())
                clear_rows(bits, hidden)
            allowed = AllowedRows.of(bits, count)
            if len(self._allowed) >= _CACHED_SELECTORS:
                self._allowed.clear()
            self._allowed[key] = allowed
        return allowed

    def _live(self) -> tuple[list[str], NDArray[np.float32], NDArray[np.float32]]:
        """Ids, prepared rows and raw embeddings of every live system, base first."""
        base, delta = self._base, self._delta
        if not self._dead and not delta.ids:
            return list(base.ids), base.prepared(self._space), base.raw
        keep = np.ones(len(base), dtype=np.bool_)
        keep[self._dead_rows] = False
        kept = np.flatnonzero(keep)
        ids = [base.ids[i] for i in kept] + list(delta.ids)
        rows = np.concatenate((base.prepared(self._space)[kept], delta.prepared(self._space)))
        raw = np.concatenate((base.raw[kept], delta.raw))
        return ids, rows, raw


class SimilarityIndex:
    """Explained similarity, nearest systems and cohorts over a changing fleet.

    Queries go to the current `FleetSnapshot` and never wait; writes (`rebuild`,
    `upsert`, `remove`, `update`) are serialised among themselves and publish a new
    snapshot when done. Hold on to `snapshot()` to ask several questions of one
    consistent fleet.
    """

    def __init__(self, layout: GroupLayout, settings: SimilaritySettings | None = None) -> None:
        self._layout = layout
        self._settings = settings if settings is not None else SimilaritySettings()
        unknown = self._settings.unknown_groups(layout.names)
        if unknown:
            raise ValueError(
                f"group weights name groups the embedding layout lacks: {', '.join(unknown)}"
            )
        self._write_lock = threading.Lock()
        empty = np.zeros((0, layout.dimension), dtype=np.float32)
        self._snapshot = self._build(0, [], empty, [])
        # A merge of a large fleet runs in the background; writes made meanwhile are
        # journalled here and replayed onto its result. None: no merge running.
        self._journal: list[_Change] | None = None
        self._merge_done = threading.Event()
        self._merge_done.set()
        self._rebuilds = 0

    @property
    def layout(self) -> GroupLayout:
        """Groups of the embeddings the index takes."""
        return self._layout

    @property
    def settings(self) -> SimilaritySettings:
        """Weights, threshold and limits in force."""
        return self._settings

    def snapshot(self) -> FleetSnapshot:
        """The current fleet; later writes do not change it."""
        return self._snapshot

    def __len__(self) -> int:
        return len(self._snapshot)

    def __contains__(self, system_id: object) -> bool:
        return system_id in self._snapshot

    # Writes.

    def rebuild(self, entries: Iterable[FleetEntry | tuple[str, Any, Mapping[str, str]]]) -> None:
        """Replaces the whole fleet, for example from the fingerprint store at start.

        A system id given twice keeps its last entry.
        """
        chosen: dict[str, tuple[NDArray[np.float32], Labels]] = {}
        interned: dict[tuple[tuple[str, str], ...], Labels] = {}
        for entry in entries:
            system_id, raw, labels = self._check_entry(entry, interned)
            chosen.pop(system_id, None)
            chosen[system_id] = (raw, labels)
        raw_rows = [raw for raw, _ in chosen.values()]
        matrix = (
            np.stack(raw_rows)
            if raw_rows
            else np.zeros((0, self._layout.dimension), dtype=np.float32)
        )
        self._publish_rebuild(list(chosen), matrix, [labels for _, labels in chosen.values()])

    def rebuild_from_matrix(
        self,
        system_ids: Sequence[str],
        embeddings: NDArray[np.floating[Any]],
        labels: Sequence[Mapping[str, str] | None] | None = None,
    ) -> None:
        """Replaces the whole fleet from ids and a (systems, dimension) matrix.

        The bulk form of `rebuild`: no per-system validation loop over the vectors.
        """
        matrix = np.asarray(embeddings, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape != (len(system_ids), self._layout.dimension):
            raise InvalidEmbedding(
                f"embeddings have shape {matrix.shape}; expected "
                f"({len(system_ids)}, {self._layout.dimension})"
            )
        if not fits_float32(matrix):
            raise InvalidEmbedding("embeddings have NaN, infinite or out-of-range values")
        narrowed = matrix.astype(np.float32)
        if labels is not None and len(labels) != len(system_ids):
            raise InvalidEmbedding("labels must have one entry per system id")
        interned: dict[tuple[tuple[str, str], ...], Labels] = {}
        frozen = [
            freeze_labels(None if labels is None else labels[i], interned)
            for i in range(len(system_ids))
        ]
        last: dict[str, int] = {}
        for position, system_id in enumerate(system_ids):
            last.pop(_check_system_id(system_id), None)
            last[system_id] = position
        if len(last) != len(system_ids):
            kept = np.fromiter(last.values(), dtype=np.intp, count=len(last))
            narrowed = narrowed[kept]
            frozen = [frozen[i] for i in kept]
        self._publish_rebuild(list(last), narrowed, frozen)

    def upsert(
        self,
        system_id: str,
        embedding: Sequence[float] | NDArray[np.floating[Any]],
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """Adds a system or replaces its embedding and labels."""
        self.update(upserts=[(system_id, embedding, labels or {})])

    def remove(self, system_id: str) -> bool:
        """Takes a system out of the index; False if it was not in it."""
        return self.update(removals=[system_id]) > 0

    def update(
        self,
        upserts: Iterable[FleetEntry | tuple[str, Any, Mapping[str, str]]] = (),
        removals: Iterable[str] = (),
    ) -> int:
        """Applies upserts, then removals, as one write: queries see all of it or none.

        Everything is validated before anything changes. Returns how many of the
        removals took out a system that was in the index.
        """
        interned: dict[tuple[tuple[str, str], ...], Labels] = {}
        changes: list[_Change] = [
            (system_id, (raw, labels))
            for system_id, raw, labels in (self._check_entry(entry, interned) for entry in upserts)
        ]
        changes += [(_check_system_id(system_id), None) for system_id in removals]
        with self._write_lock:
            snapshot = self._snapshot
            base = snapshot._base
            pending, dead, hits = _apply(snapshot, changes)
            generation = snapshot.generation + 1
            if self._journal is not None:
                self._journal += changes
            outgrown = len(pending) + len(dead) > self._settings.delta_fraction * len(base)
            if outgrown and not self._merges_in_background(len(base) + len(pending)):
                self._snapshot = self._merge(generation, base, dead, pending)
                return hits
            self._snapshot = FleetSnapshot(
                generation=generation,
                space=snapshot.space,
                settings=self._settings,
                base=base,
                dead=frozenset(dead),
                delta=self._segment(pending, snapshot.space),
            )
            if outgrown and self._journal is None:
                self._start_merge(self._snapshot, dead, pending)
            return hits

    def wait_for_merge(self, timeout: float | None = None) -> bool:
        """Waits until no background merge runs; False if one still does after `timeout`."""
        return self._merge_done.wait(timeout)

    def _merges_in_background(self, size: int) -> bool:
        """Whether merging a fleet of this size builds an approximate index, which takes
        long enough (a minute at a million) that writes must not wait for it."""
        return size >= self._settings.approximate.min_systems

    def _start_merge(
        self,
        snapshot: FleetSnapshot,
        dead: set[int],
        pending: dict[str, tuple[NDArray[np.float32], Labels]],
    ) -> None:
        """Merges in a thread; later writes go to the delta and the journal meanwhile."""
        self._journal = []
        self._merge_done.clear()
        rebuilds = self._rebuilds
        thread = threading.Thread(
            target=self._merge_in_background,
            args=(snapshot._base, set(dead), dict(pending), rebuilds),
            name="similarity-merge",
            daemon=True,
        )
        thread.start()

    def _merge_in_background(
        self,
        base: _Segment,
        dead: set[int],
        pending: dict[str, tuple[NDArray[np.float32], Labels]],
        rebuilds: int,
    ) -> None:
        try:
            merged = self._merge(0, base, dead, pending)
            with self._write_lock:
                journal, self._journal = self._journal or [], None
                if rebuilds != self._rebuilds:  # the fleet was replaced meanwhile
                    return
                current = self._snapshot
                replayed, hidden, _ = _apply(merged, journal)
                self._snapshot = FleetSnapshot(
                    generation=current.generation + 1,
                    space=merged.space,
                    settings=self._settings,
                    base=merged._base,
                    dead=frozenset(hidden),
                    delta=self._segment(replayed, merged.space),
                )
        except Exception:
            logger.exception("similarity index: background merge failed; the delta stays")
            with self._write_lock:
                self._journal = None
        finally:
            self._merge_done.set()

    # Queries, on the current snapshot.

    def nearest(
        self,
        system_id: str,
        k: int,
        *,
        labels: Mapping[str, str] | None = None,
        threshold: float | None = None,
    ) -> list[Similarity]:
        """See `FleetSnapshot.nearest`."""
        return self._snapshot.nearest(system_id, k, labels=labels, threshold=threshold)

    def nearest_to_embedding(
        self,
        embedding: Sequence[float] | NDArray[np.floating[Any]],
        k: int,
        *,
        labels: Mapping[str, str] | None = None,
        threshold: float | None = None,
    ) -> list[Similarity]:
        """See `FleetSnapshot.nearest_to_embedding`."""
        return self._snapshot.nearest_to_embedding(embedding, k, labels=labels, threshold=threshold)

    def compare(self, first: str, second: str, *, threshold: float | None = None) -> Similarity:
        """See `FleetSnapshot.compare`."""
        return self._snapshot.compare(first, second, threshold=threshold)

    def cohorts(self) -> Cohorts:
        """See `FleetSnapshot.cohorts`."""
        return self._snapshot.cohorts()

    def cohort_of(self, system_id: str) -> CohortAssignment:
        """See `FleetSnapshot.cohort_of`."""
        return self._snapshot.cohort_of(system_id)

    def assign_cohort(
        self, embedding: Sequence[float] | NDArray[np.floating[Any]]
    ) -> CohortAssignment:
        """See `FleetSnapshot.assign_cohort`."""
        return self._snapshot.assign_cohort(embedding)

    def memory_bytes(self) -> int:
        """See `FleetSnapshot.memory_bytes`."""
        return self._snapshot.memory_bytes()

    # Building.

    def _check_entry(
        self,
        entry: FleetEntry | tuple[str, Any, Mapping[str, str]],
        interned: dict[tuple[tuple[str, str], ...], Labels],
    ) -> tuple[str, NDArray[np.float32], Labels]:
        system_id, embedding, labels = entry
        system_id = _check_system_id(system_id)
        raw = as_embedding(
            embedding, self._layout.dimension, InvalidEmbedding, f"embedding of {system_id!r}"
        )
        return system_id, raw, freeze_labels(labels, interned)

    def _publish_rebuild(
        self, ids: list[str], raw: NDArray[np.float32], labels: list[Labels]
    ) -> None:
        with self._write_lock:
            self._rebuilds += 1
            generation = self._snapshot.generation + 1
            self._snapshot = self._build(generation, ids, raw, labels)

    def _build(
        self, generation: int, ids: list[str], raw: NDArray[np.float32], labels: list[Labels]
    ) -> FleetSnapshot:
        space = EmbeddingSpace.fit(self._layout, raw, self._settings)
        base = _Segment.build(
            ids,
            raw,
            labels,
            space,
            self._settings.label_mask_max_values,
            self._settings.approximate,
        )
        return FleetSnapshot(
            generation=generation,
            space=space,
            settings=self._settings,
            base=base,
            dead=frozenset(),
            delta=_empty_segment(space),
        )

    def _merge(
        self,
        generation: int,
        base: _Segment,
        dead: set[int],
        pending: dict[str, tuple[NDArray[np.float32], Labels]],
    ) -> FleetSnapshot:
        """Folds the pending changes into a new base and refits the standardisation."""
        keep = np.ones(len(base), dtype=np.bool_)
        keep[list(dead)] = False
        kept = np.flatnonzero(keep)
        ids = [base.ids[i] for i in kept] + list(pending)
        labels = [base.labels[i] for i in kept] + [labels for _, labels in pending.values()]
        parts = [base.raw[kept]]
        if pending:
            parts.append(np.stack([raw for raw, _ in pending.values()]))
        return self._build(generation, ids, np.concatenate(parts), labels)

    def _segment(
        self, pending: dict[str, tuple[NDArray[np.float32], Labels]], space: EmbeddingSpace
    ) -> _Segment:
        if not pending:
            return _empty_segment(space)
        raw = np.stack([raw for raw, _ in pending.values()])
        labels = [labels for _, labels in pending.values()]
        return _Segment.build(
            list(pending), raw, labels, space, self._settings.label_mask_max_values
        )
