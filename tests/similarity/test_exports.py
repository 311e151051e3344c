"""The package's public surface is exactly its `__all__`."""

from __future__ import annotations

import cfgclone.similarity as similarity


def test_every_exported_name_exists_once() -> None:
    assert len(set(similarity.__all__)) == len(similarity.__all__)
    missing = [name for name in similarity.__all__ if not hasattr(similarity, name)]
    assert missing == []


def test_public_members_are_all_exported() -> None:
    public = {
        name
        for name, value in vars(similarity).items()
        if not name.startswith("_")
        and getattr(value, "__module__", "").startswith(similarity.__name__ + ".")
    }
    constants = {"DEFAULT_GROUP_WEIGHTS", "DEFAULT_VALUE_GROUPS", "Labels"}
    assert public == set(similarity.__all__) - constants
