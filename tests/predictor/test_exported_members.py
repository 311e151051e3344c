"""The predictor's public surface is its ``__all__``, and every name in it resolves."""

from __future__ import annotations

import ast
import importlib
import inspect

import pytest

import cfgclone.predictor as predictor


def test_every_exported_name_resolves_to_its_defining_module() -> None:
    for name in predictor.__all__:
        value = getattr(predictor, name)
        module = getattr(value, "__module__", None)
        if module is not None and module.startswith("cfgclone.predictor."):
            assert getattr(importlib.import_module(module), name) is value


def test_the_lazy_map_and_the_type_checkers_view_name_the_same_modules() -> None:
    """The names are declared twice (for mypy under TYPE_CHECKING, and in the lazy map):
    the two must agree with each other and with ``__all__``."""
    tree = ast.parse(inspect.getsource(predictor))
    static: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom)
                assert statement.module
                static.update({alias.name: statement.module for alias in statement.names})
    assert static == predictor._MODULE_OF
    assert sorted(static) == sorted(predictor.__all__)
    assert len(set(predictor.__all__)) == len(predictor.__all__)


def test_unknown_names_fail() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Guess'"):
        _ = predictor.Guess
