"""Checks that hold for every field of every request, driven by the message descriptors.

:func:`check_message` walks a request and refuses, naming the field: strings
over their limit, NUL and other control characters, timestamps and durations
outside protobuf's range, NaN and infinite numbers, enum values the contract
does not define, lists and maps over their length limit, and configuration
content that is too large or holds such values. What a field means (a name's
pattern, a policy window that must be positive) is checked where the request
is parsed; this module is the part that no message type can forget.
"""

from __future__ import annotations

import math
import re
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from cfgclone.common import limits
from cfgclone.common.errors import InvalidArgument

_QUOTE_CHARS = 32
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FLOATING = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)
_WELL_KNOWN_CONTENT = (
    "google.protobuf.Struct",
    "google.protobuf.Value",
    "google.protobuf.ListValue",
)

__all__ = ["check_message", "quote"]


def quote(value: str) -> str:
    """A short, printable quotation of ``value`` for an error message.

    Never more than a few dozen characters, so a megabyte of bad input does
    not come back as a megabyte of status trailer.
    """
    if len(value) <= _QUOTE_CHARS:
        return repr(value)
    return f"{value[:_QUOTE_CHARS]!r}... ({len(value)} characters)"


def check_message(message: Message, prefix: str = "") -> None:
    """INVALID_ARGUMENT for the first field of ``message`` that breaks a universal rule."""
    descriptor = message.DESCRIPTOR
    if descriptor.full_name in _WELL_KNOWN_CONTENT:
        _check_content(message, prefix.rstrip("."), depth=0)
        return
    if descriptor.full_name == "google.protobuf.Timestamp":
        _check_timestamp(message, prefix.rstrip("."))
        return
    if descriptor.full_name == "google.protobuf.Duration":
        _check_duration(message, prefix.rstrip("."))
        return
    if descriptor.full_name == "cfgclone.v1.SampleBatch" and _columns_only(descriptor):
        _check_sample_batch(message, prefix)
        return
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if _is_map(field):
            _check_map(field, value, path)
        elif field.is_repeated:
            _check_repeated(field, value, path)
        else:
            _check_single(field, value, path)


_SERIES_FIELDS = frozenset({"metric", "unit", "kind", "ts_unix_ns", "values"})


def _columns_only(batch: Any) -> bool:
    """Whether a series still has only the fields the fast path below knows."""
    series = _message_type(batch.fields_by_name["series"])
    return {f.name for f in series.fields} == _SERIES_FIELDS


def _check_sample_batch(batch: Any, prefix: str) -> None:
    """The same rules for a sample batch, each over all its series at once.

    A batch may hold thousands of series; the names, units and kinds are
    checked in a few C-level passes and searched one by one only to name the
    series at fault.
    """
    for name in ("system", "batch_id"):
        _check_text(getattr(batch, name), f"{prefix}{name}", limits.MAX_TEXT_CHARS)
    series = batch.series
    path = f"{prefix}series"
    _check_length(len(series), limits.MAX_SERIES_PER_BATCH, path)
    rows = [(s.metric, s.unit, s.kind) for s in series]
    for column, name in enumerate(("metric", "unit")):
        texts = [row[column] for row in rows]
        too_long = max(map(len, texts), default=0) > limits.MAX_TEXT_CHARS
        if too_long or _CONTROL.search("".join(texts)) is not None:
            for index, text in enumerate(texts):
                _check_text(text, f"{path}[{index}].{name}", limits.MAX_TEXT_CHARS)
    kind = _message_type(batch.DESCRIPTOR.fields_by_name["series"]).fields_by_name["kind"]
    assert kind.enum_type is not None
    if not {row[2] for row in rows}.issubset(kind.enum_type.values_by_number):
        for index, row in enumerate(rows):
            _check_enum(kind, row[2], f"{path}[{index}].kind")


def _is_map(field: FieldDescriptor) -> bool:
    message_type = field.message_type
    return message_type is not None and message_type.GetOptions().map_entry


def _check_single(field: FieldDescriptor, value: Any, path: str) -> None:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        check_message(value, f"{path}.")
    elif field.type == FieldDescriptor.TYPE_STRING:
        free_text = field.name in limits.FREE_TEXT_FIELDS
        _check_text(value, path, _text_limit(field.name), free_text=free_text)
    elif field.type in _FLOATING:
        _check_finite(value, path)
    elif field.type == FieldDescriptor.TYPE_ENUM:
        _check_enum(field, value, path)


def _check_repeated(field: FieldDescriptor, values: Any, path: str) -> None:
    limit = (
        limits.MAX_SERIES_PER_BATCH
        if field.full_name == "cfgclone.v1.SampleBatch.series"
        else limits.MAX_REPEATED
    )
    if field.type not in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_STRING):
        if field.type == FieldDescriptor.TYPE_ENUM:
            _check_length(len(values), limits.MAX_REPEATED, path)
            for index, value in enumerate(values):
                _check_enum(field, value, f"{path}[{index}]")
        # Numeric columns (sample timestamps and values) are bounded by the
        # message size and checked by the domain code that reads them.
        return
    _check_length(len(values), limit, path)
    for index, value in enumerate(values):
        _check_single(field, value, f"{path}[{index}]")


def _check_map(field: FieldDescriptor, entries: Any, path: str) -> None:
    labels = field.name == "labels"
    _check_length(len(entries), limits.MAX_LABELS if labels else limits.MAX_REPEATED, path)
    value_field = _message_type(field).fields_by_name["value"]
    key_limit = limits.MAX_LABEL_KEY_CHARS if labels else limits.MAX_TEXT_CHARS
    value_limit = limits.MAX_LABEL_VALUE_CHARS if labels else limits.MAX_TEXT_CHARS
    for key, value in entries.items():
        if isinstance(key, str):
            _check_text(key, f"{path} key", key_limit)
        entry = f"{path}[{quote(str(key))}]"
        if value_field.type == FieldDescriptor.TYPE_STRING:
            _check_text(value, entry, value_limit)
        else:
            _check_single(value_field, value, entry)


def _message_type(field: FieldDescriptor) -> Descriptor:
    message_type = field.message_type
    assert message_type is not None
    return message_type


def _check_length(count: int, limit: int, path: str) -> None:
    if count > limit:
        raise InvalidArgument.for_field(path, f"has {count} items; at most {limit} are allowed")


def _text_limit(name: str) -> int:
    if name in limits.FREE_TEXT_FIELDS:
        return limits.MAX_FREE_TEXT_CHARS
    if name == "page_token":
        return limits.MAX_PAGE_TOKEN_CHARS
    return limits.MAX_TEXT_CHARS


def _check_text(value: str, path: str, limit: int, *, free_text: bool = False) -> None:
    if len(value) > limit:
        raise InvalidArgument.for_field(
            path, f"is {len(value)} characters long; at most {limit} are allowed ({quote(value)})"
        )
    control = (_CONTROL_IN_TEXT if free_text else _CONTROL).search(value)
    if control is not None:
        what = "a NUL character" if control.group() == "\x00" else "a control character"
        raise InvalidArgument.for_field(
            path, f"contains {what} at offset {control.start()} ({quote(value)})"
        )


def _check_finite(value: float, path: str) -> None:
    if not math.isfinite(value):
        raise InvalidArgument.for_field(path, f"must be a finite number (got {value})")


def _check_enum(field: FieldDescriptor, value: int, path: str) -> None:
    enum = field.enum_type
    assert enum is not None
    if value not in enum.values_by_number:
        raise InvalidArgument.for_field(path, f"{value} is not a value of {enum.name}")


def _check_timestamp(stamp: Any, path: str) -> None:
    if not limits.MIN_TIMESTAMP_SECONDS <= stamp.seconds <= limits.MAX_TIMESTAMP_SECONDS:
        raise InvalidArgument.for_field(
            path, f"seconds {stamp.seconds} is outside 0001-01-01 to 9999-12-31 UTC"
        )
    if not 0 <= stamp.nanos <= 999_999_999:
        raise InvalidArgument.for_field(path, f"nanos {stamp.nanos} is outside 0-999999999")


def _check_duration(duration: Any, path: str) -> None:
    if abs(duration.seconds) > limits.MAX_DURATION_SECONDS:
        raise InvalidArgument.for_field(
            path, f"seconds {duration.seconds} is beyond +-10,000 years"
        )
    nanos = duration.nanos
    mixed_signs = nanos and duration.seconds and (nanos > 0) != (duration.seconds > 0)
    if abs(nanos) > 999_999_999 or mixed_signs:
        raise InvalidArgument.for_field(
            path, f"nanos {nanos} must be within +-999999999 and have the sign of seconds"
        )


def _check_content(message: Any, path: str, depth: int) -> None:
    """Struct, Value and ListValue: configuration content."""
    if depth == 0 and message.ByteSize() > limits.MAX_CONTENT_BYTES:
        raise InvalidArgument.for_field(
            path, f"is {message.ByteSize()} bytes; at most {limits.MAX_CONTENT_BYTES} are allowed"
        )
    name = message.DESCRIPTOR.full_name
    if name == "google.protobuf.Struct":
        _check_length(len(message.fields), limits.MAX_CONTENT_ENTRIES, path)
        for key, value in message.fields.items():
            _check_text(key, f"{path} key", limits.MAX_TEXT_CHARS)
            _check_content(value, _member(path, key), depth + 1)
    elif name == "google.protobuf.ListValue":
        _check_length(len(message.values), limits.MAX_CONTENT_ENTRIES, path)
        for index, value in enumerate(message.values):
            _check_content(value, f"{path}[{index}]", depth + 1)
    else:
        kind = message.WhichOneof("kind")
        if kind == "number_value":
            _check_finite(message.number_value, path)
        elif kind == "string_value":
            _check_text(message.string_value, path, limits.MAX_CONTENT_STRING_CHARS, free_text=True)
        elif kind == "null_value":
            _check_enum(message.DESCRIPTOR.fields_by_name["null_value"], message.null_value, path)
        elif kind in ("struct_value", "list_value"):
            _check_content(getattr(message, kind), path, depth + 1)


def _member(path: str, key: str) -> str:
    """The path of ``key`` inside the object at ``path``, short whatever the key."""
    if len(key) <= _QUOTE_CHARS and re.fullmatch(r"[A-Za-z0-9_.-]+", key):
        return f"{path}.{key}"
    return f"{path}[{quote(key)}]"
