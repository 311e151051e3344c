"""Checks of a configuration's values against its parameter schema.

The schema is the built-in one of the configuration's kind (see
:mod:`cfgclone.adaptation.builtin`) with the parameters the configuration
declares itself winning; the same schema the orchestrator adapts with, so a value the
predictor accepts is one the adaptation engine understands.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.protobuf import json_format

from cfgclone.adaptation import (
    InvalidConfiguration,
    InvalidSchema,
    Schema,
    schema_for,
    schema_from_proto,
)
from cfgclone.common.errors import FieldViolation, InvalidArgument
from cfgclone.predictor.codec import Content
from cfgclone.v1 import common_pb2


def stored_schema(kind: str, schema: Sequence[Mapping[str, Any]]) -> Schema:
    """The schema a stored configuration was checked against (its kind's, its own winning);
    a stored declaration that no longer parses is left out."""
    try:
        messages = [json_format.ParseDict(dict(s), common_pb2.ParameterSpec()) for s in schema]
        return schema_for(kind, schema_from_proto(kind, messages).parameters)
    except (json_format.ParseError, InvalidSchema):
        return schema_for(kind)


def check_content(
    kind: str, content: Content, schema: Sequence[Mapping[str, Any]], field: str
) -> None:
    """INVALID_ARGUMENT naming every value (or declaration) the schema refuses."""
    try:
        messages = [json_format.ParseDict(dict(s), common_pb2.ParameterSpec()) for s in schema]
    except json_format.ParseError as error:
        raise InvalidArgument.for_field(f"{field}.schema", str(error)) from None
    try:
        declared = schema_from_proto(kind, messages)
        schema_for(kind, declared.parameters).validate(content)
    except InvalidSchema as error:
        raise _invalid(f"{field}.schema", error, error.violations) from None
    except InvalidConfiguration as error:
        raise _invalid(f"{field}.content", error, error.violations) from None


def new_parameters(
    kind: str,
    content: Content,
    schema: Sequence[Mapping[str, Any]],
    current: Iterable[str],
    field: str,
    *,
    allow_new: bool,
    allow_field: str,
) -> list[str]:
    """Refuse the parameters of ``content`` that neither the kind's schema nor the
    ``current`` configuration's parameters know (most likely typos): INVALID_ARGUMENT with
    reason UNKNOWN_PARAMETER and, per parameter, a field violation offering the nearest
    known names. ``allow_new`` (the request's ``allow_field``) lets them through on
    purpose, and a kind without a schema cannot tell a typo from a new parameter: both
    give warnings instead, returned."""
    checked = stored_schema(kind, schema)
    unknown = checked.unknown_parameters(content, also_known=current)
    if not unknown:
        return []
    if not checked.parameters:
        names = ", ".join(parameter.name for parameter in unknown)
        return [f"{kind} has no schema; {names} {'is' if len(unknown) == 1 else 'are'} unchecked"]
    if allow_new:
        return [
            f"{parameter.name} is new: neither the {kind} schema nor the current "
            "configuration has it"
            for parameter in unknown
        ]
    violations = [
        FieldViolation(
            f"{field}.content.{parameter.name}", _unknown(kind, parameter.name, parameter.nearest)
        )
        for parameter in unknown
    ]
    raise InvalidArgument(
        "; ".join(f"{v.field}: {v.description}" for v in violations)
        + f" ({allow_field} sets new parameters anyway)",
        violations=violations,
        reason="UNKNOWN_PARAMETER",
        metadata={"kind": kind, "parameters": ",".join(p.name for p in unknown)},
    )


def _unknown(kind: str, name: str, nearest: Sequence[str]) -> str:
    hint = f"; did you mean {' or '.join(nearest)}?" if nearest else ""
    return f"{kind} has no parameter {name}{hint}"


def _invalid(prefix: str, error: Exception, violations: Sequence[Any]) -> InvalidArgument:
    return InvalidArgument(
        f"{prefix}: {error}",
        violations=[FieldViolation(f"{prefix}.{v.parameter}", v.description) for v in violations],
        reason="INVALID_CONFIGURATION",
    )
