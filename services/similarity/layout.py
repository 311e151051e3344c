"""The named groups of a fingerprint embedding, taken as data.

The fingerprint service decides how long each group is; the similarity engine
only needs the names, offsets and lengths, so a new model version that grows a
group needs no change here.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cfgclone.v1 import common_pb2

__all__ = ["GroupLayout", "GroupSpan"]


@dataclass(frozen=True, slots=True)
class GroupSpan:
    """One named slice of the embedding: entries `offset` to `offset + length - 1`."""

    name: str
    """Group name, for example `hardware` or `curves`."""
    offset: int
    """First index of the group in the embedding."""
    length: int
    """Number of entries; at least one."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("an embedding group needs a name")
        if self.offset < 0:
            raise ValueError(f"group {self.name!r} has a negative offset {self.offset}")
        if self.length < 1:
            raise ValueError(f"group {self.name!r} has length {self.length}; it needs at least 1")

    @property
    def stop(self) -> int:
        """One past the group's last index."""
        return self.offset + self.length


@dataclass(frozen=True, slots=True)
class GroupLayout:
    """How an embedding of `dimension` floats splits into named, non-overlapping groups.

    Entries that belong to no group are carried along but never compared.
    """

    groups: tuple[GroupSpan, ...]
    """Groups in the order answers list them."""
    dimension: int
    """Length of every embedding of the fleet."""

    def __post_init__(self) -> None:
        if not self.groups:
            raise ValueError("an embedding layout needs at least one group")
        names = [group.name for group in self.groups]
        if len(set(names)) != len(names):
            raise ValueError(f"embedding group names repeat: {names}")
        taken = sorted(self.groups, key=lambda group: group.offset)
        for before, after in itertools.pairwise(taken):
            if after.offset < before.stop:
                raise ValueError(f"embedding groups {before.name!r} and {after.name!r} overlap")
        if taken[-1].stop > self.dimension:
            raise ValueError(
                f"group {taken[-1].name!r} ends at {taken[-1].stop}, "
                f"beyond the embedding length {self.dimension}"
            )

    @classmethod
    def consecutive(cls, lengths: Sequence[tuple[str, int]]) -> GroupLayout:
        """Lays out groups one after the other from index 0, as (name, length) pairs."""
        groups: list[GroupSpan] = []
        offset = 0
        for name, length in lengths:
            groups.append(GroupSpan(name, offset, length))
            offset += length
        return cls(tuple(groups), offset)

    @classmethod
    def from_proto(
        cls, groups: Iterable[common_pb2.EmbeddingGroup], dimension: int | None = None
    ) -> GroupLayout:
        """Reads `Fingerprint.embedding_groups`; the dimension defaults to the last group's end.

        Pass `len(fingerprint.embedding)` as `dimension` when the embedding may carry
        trailing entries that belong to no group.
        """
        spans = tuple(GroupSpan(group.name, group.offset, group.length) for group in groups)
        if dimension is None:
            dimension = max((span.stop for span in spans), default=0)
        return cls(spans, dimension)

    @property
    def names(self) -> tuple[str, ...]:
        """Group names in layout order."""
        return tuple(group.name for group in self.groups)
