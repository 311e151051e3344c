"""The predictor's public surface is its ``__all__``, and every name in it resolves."""

from __future__ import annotations

import importlib

import pytest

import cfgclone.predictor as predictor


def test_every_exported_name_resolves_to_its_defining_module() -> None:
    for name in predictor.__all__:
        value = getattr(predictor, name)
        module = getattr(value, "__module__", None)
        if module is not None and module.startswith("cfgclone.predictor."):
            assert getattr(importlib.import_module(module), name) is value


def test_exports_are_unique_and_unknown_names_fail() -> None:
    assert len(set(predictor.__all__)) == len(predictor.__all__)
    assert set(predictor.__all__) <= set(dir(predictor))
    with pytest.raises(AttributeError, match="no attribute 'Guess'"):
        _ = predictor.Guess
