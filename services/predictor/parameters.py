"""Checks of a configuration's values against its parameter schema.

The schema is the built-in one of the configuration's kind (see
:mod:`cfgclone.adaptation.builtin`) with the parameters the configuration
declares itself winning; the same schema the orchestrator adapts with, so a value the
predictor accepts is one the adaptation engine understands.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def _invalid(prefix: str, error: Exception, violations: Sequence[Any]) -> InvalidArgument:
    return InvalidArgument(
        f"{prefix}: {error}",
        violations=[FieldViolation(f"{prefix}.{v.parameter}", v.description) for v in violations],
        reason="INVALID_CONFIGURATION",
    )
