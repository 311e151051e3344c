"""The package's public surface is exactly its ``__all__``."""

from __future__ import annotations

import cfgclone.fingerprint as fingerprint


def test_all_public_names_are_exported_and_every_export_exists() -> None:
    public = {
        name
        for name, value in vars(fingerprint).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("cfgclone.")
    }
    assert public <= set(fingerprint.__all__)
    for name in fingerprint.__all__:
        assert hasattr(fingerprint, name), name
