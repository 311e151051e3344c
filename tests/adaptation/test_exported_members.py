"""The adaptation engine's public surface is its ``__all__``, and every name in it resolves."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import cfgclone.adaptation as adaptation


def test_every_exported_name_resolves_to_its_defining_module() -> None:
    assert len(set(adaptation.__all__)) == len(adaptation.__all__)
    for name in adaptation.__all__:
        value = getattr(adaptation, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("cfgclone.adaptation.")
            assert getattr(importlib.import_module(value.__module__), name) is value


def test_the_engine_loads_without_grpc_or_a_database_driver() -> None:
    code = (
        "import sys, cfgclone.adaptation\n"
        "loaded = {'grpc', 'psycopg'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
