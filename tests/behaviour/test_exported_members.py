"""The behaviour package's public surface is exactly its ``__all__``."""

from __future__ import annotations

import cfgclone.behaviour as behaviour


def test_all_public_names_are_exported_and_every_export_exists() -> None:
    public = {
        name
        for name, value in vars(behaviour).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("cfgclone.")
    }
    assert public <= set(behaviour.__all__)
    for name in behaviour.__all__:
        assert hasattr(behaviour, name), name
