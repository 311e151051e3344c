"""Checks of a configuration's values against its parameter schema."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cfgclone.predictor.codec import Content


def check_content(content: Content, schema: Sequence[Mapping[str, Any]], field: str) -> None:
    """INVALID_ARGUMENT naming every value the schema refuses."""
    del content, schema, field
