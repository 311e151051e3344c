"""Errors of the fingerprint model.

The model imports no gRPC: the servicer maps these to status codes in one place
(``InsufficientData`` and ``IncompatibleFingerprint`` to FAILED_PRECONDITION,
``InvalidSamples`` to INVALID_ARGUMENT). Every message says what is missing or
wrong, so it can be shown to a user as it is.
"""

from __future__ import annotations

__all__ = [
    "FingerprintError",
    "IncompatibleFingerprint",
    "InsufficientData",
    "InvalidSamples",
]


class FingerprintError(Exception):
    """Base of the errors the fingerprint model raises."""


class InsufficientData(FingerprintError):
    """The window holds too little data for a fingerprint (no samples, no load, thin regimes)."""

    def __init__(self, message: str, progress: str | None = None) -> None:
        super().__init__(message)
        self.progress = progress or message
        """How far the data is from enough, in a few words for ``fingerprint show``."""


class InvalidSamples(FingerprintError, ValueError):
    """Sample arrays that break the input contract (lengths differ, values not finite)."""


class IncompatibleFingerprint(FingerprintError):
    """Fingerprints that cannot be merged or read: another load metric, scale or model version."""
