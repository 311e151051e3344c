"""Hypothesis strategies that build any request message from its protobuf descriptor.

Values lean towards what breaks services: NUL and control characters, names
that are almost right (a trailing newline, an id beyond bigint), very long
strings and lists, the extremes of every integer type, NaN and infinities,
timestamps and durations outside protobuf's range, enum numbers the contract
does not define, and configuration content holding any of these. Names of
resources that exist in the fuzzed database are mixed in, so requests also get
past the first checks and reach the domain code and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import message_factory, struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: INT32,
    FieldDescriptor.TYPE_SINT32: INT32,
    FieldDescriptor.TYPE_SFIXED32: INT32,
    FieldDescriptor.TYPE_INT64: INT64,
    FieldDescriptor.TYPE_SINT64: INT64,
    FieldDescriptor.TYPE_SFIXED64: INT64,
    FieldDescriptor.TYPE_UINT32: UINT32,
    FieldDescriptor.TYPE_FIXED32: UINT32,
    FieldDescriptor.TYPE_UINT64: UINT64,
    FieldDescriptor.TYPE_FIXED64: UINT64,
}

BAD_TEXT = [
    "h\x00x",
    "\x00",
    "line\nbreak",
    "tab\there",
    "bell\x07",
    "del\x7f",
    "x" * 1100,
    "y" * 20_000,
    "é" * 600,
    "\u202e",
    "{}",
    '{"o": 1e400}',
    "[" * 1000,
    "%s%s%n",
    "' OR 1=1 --",
    "-1",
    "NaN",
]


def text_values(names: Sequence[str]) -> st.SearchStrategy[str]:
    """Strings: resource names that exist, near-miss names, hostile text, random text."""
    near_misses = [f"{name}\n" for name in names if name] + [
        f"{name}\x00" for name in names if name
    ]
    return st.one_of(
        st.sampled_from(list(names)),
        st.sampled_from(near_misses),
        st.sampled_from(BAD_TEXT),
        st.text(max_size=24),
        st.builds(str.__add__, st.sampled_from(list(names)), st.text(max_size=4)),
    )


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    specials = [v for v in (0, 1, -1, 2, low, high, 10**12, -(10**12), 2**53) if low <= v <= high]
    return st.one_of(st.sampled_from(specials), st.integers(low, high))


_FLOATS = st.one_of(
    st.sampled_from([0.0, 1.0, -1.0, 0.5, float("nan"), float("inf"), float("-inf"), 1e308]),
    st.floats(allow_nan=True, allow_infinity=True),
)

_TIMESTAMP_SECONDS = st.one_of(
    st.sampled_from(
        [
            0,
            1_700_000_000,
            1_800_000_000,
            -62_135_596_800,
            253_402_300_799,
            -62_135_596_801,
            253_402_300_800,
            10**12,
        ]
    ),
    st.integers(-(10**13), 10**13),
)
_NANOS = st.one_of(st.sampled_from([0, -5, 999_999_999, 10**9]), st.integers(*INT32))
_DURATION_SECONDS = st.one_of(
    st.sampled_from(
        [0, 1, 10, -10, 60, 3600, 10**15, -(10**15), 315_576_000_000, -315_576_000_000]
    ),
    st.integers(-(10**16), 10**16),
)


def _content_values(texts: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    leaves = st.one_of(st.none(), st.booleans(), _FLOATS, texts, st.integers(-(10**6), 10**6))
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(st.one_of(texts, st.text(max_size=8)), children, max_size=4),
        ),
        max_leaves=8,
    )


_SANE_FLOATS = st.floats(0.0, 1.0)
_SANE_TIMESTAMP_SECONDS = st.integers(1_699_999_000, 1_700_000_100)
_SANE_DURATION_SECONDS = st.integers(1, 3600)


def _mixed(sane: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any], sane_weight: int) -> Any:
    """``sane`` ``sane_weight`` times as often as ``hostile``."""
    return st.one_of(*([sane] * sane_weight), hostile)


class MessageStrategies:
    """Builds a strategy for any message type of the contract.

    ``sane_weight`` 0 makes every value hostile; higher values make most
    values plausible, so a request gets further before its one bad field;
    -1 makes every value plausible.
    """

    def __init__(
        self,
        names: Sequence[str],
        max_depth: int = 4,
        sane_weight: int = 0,
        hints: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self._max_depth = max_depth
        self._weight = sane_weight
        self._hints = hints or {}
        self._texts = self._mix(st.sampled_from(list(names)), text_values(names))
        self._content = self._mix(
            _content_values(st.sampled_from(["128MB", "on", "x"])), _content_values(self._texts)
        )
        self._floats = self._mix(_SANE_FLOATS, _FLOATS)
        self._timestamp_seconds = self._mix(_SANE_TIMESTAMP_SECONDS, _TIMESTAMP_SECONDS)
        self._duration_seconds = self._mix(_SANE_DURATION_SECONDS, _DURATION_SECONDS)
        self._nanos = self._mix(st.just(0), _NANOS)
        self._counts = self._mix(st.sampled_from([0, 1, 2]), st.sampled_from([0, 1, 2, 3, 1001]))

    def _mix(self, sane: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> Any:
        if self._weight < 0:
            return sane
        return _mixed(sane, hostile, self._weight) if self._weight else hostile

    def message(self, descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
        return self._build(descriptor, depth)

    def _build(self, descriptor: Descriptor, depth: int) -> st.SearchStrategy[Message]:
        @st.composite
        def build(draw: st.DrawFn) -> Message:
            message = message_factory.GetMessageClass(descriptor)()
            self._fill(draw, message, depth)
            return message

        return build()

    def _fill(self, draw: st.DrawFn, message: Message, depth: int) -> None:
        descriptor = message.DESCRIPTOR
        name = descriptor.full_name
        if name == "google.protobuf.Timestamp":
            message.seconds = draw(self._timestamp_seconds)  # type: ignore[attr-defined]
            message.nanos = draw(self._nanos)  # type: ignore[attr-defined]
            return
        if name == "google.protobuf.Duration":
            message.seconds = draw(self._duration_seconds)  # type: ignore[attr-defined]
            message.nanos = draw(self._nanos)  # type: ignore[attr-defined]
            return
        if name == "google.protobuf.Struct":
            content = draw(st.dictionaries(self._texts, self._content, max_size=4))
            struct = struct_pb2.Struct()
            struct.update(content)
            message.CopyFrom(struct)
            return
        if name in ("google.protobuf.Value", "google.protobuf.ListValue", "google.rpc.Status"):
            return
        for field in descriptor.fields:
            if not draw(self._mix(st.booleans(), st.booleans()) if self._weight else st.booleans()):
                continue
            self._fill_field(draw, message, field, depth)

    def _fill_field(
        self, draw: st.DrawFn, message: Message, field: FieldDescriptor, depth: int
    ) -> None:
        container = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            entries = draw(
                st.dictionaries(self._scalar(key_field), self._scalar(value_field), max_size=3)
            )
            if not self._weight and draw(st.integers(0, 9)) == 0:
                entries.update({f"k{i}": "v" for i in range(100)})
            container.update(entries)
            return
        if field.is_repeated:
            count = draw(self._counts)
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                if depth >= self._max_depth:
                    return
                item = draw(self._build(field.message_type, depth + 1))
                for _ in range(count if count < 1000 else 1001):
                    container.add().CopyFrom(item)
            else:
                value = draw(self._scalar(field))
                container.extend([value] * count)
            return
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth >= self._max_depth:
                return
            container.CopyFrom(draw(self._build(field.message_type, depth + 1)))
            return
        setattr(message, field.name, draw(self._scalar(field)))

    def _scalar(self, field: FieldDescriptor) -> st.SearchStrategy[Any]:
        kind = field.type
        if kind == FieldDescriptor.TYPE_STRING:
            hint = self._hints.get(field.full_name) or self._hints.get(field.name)
            if hint and self._weight:
                return self._mix(st.sampled_from(list(hint)), self._texts)
            return self._texts
        if kind == FieldDescriptor.TYPE_BYTES:
            return st.binary(max_size=16)
        if kind == FieldDescriptor.TYPE_BOOL:
            return st.booleans()
        if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return self._floats
        if kind == FieldDescriptor.TYPE_ENUM:
            assert field.enum_type is not None
            known = sorted(field.enum_type.values_by_number)
            return self._mix(st.sampled_from(known), st.integers(-3, 1000))
        if kind == FieldDescriptor.TYPE_MESSAGE:
            assert field.message_type is not None
            return self._build(field.message_type, self._max_depth)
        low, high = _INT_RANGES[kind]
        return self._mix(st.integers(0, 100), _integers(low, high))
