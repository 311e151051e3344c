"""Domain errors of the similarity engine.

The gRPC servicer turns these into statuses in one place: `InvalidQuery`,
`InvalidEmbedding` and `InvalidFingerprint` are the caller's fault
(INVALID_ARGUMENT), `UnknownSystem` and `UnknownCohort` name something the index
does not hold (NOT_FOUND). Each also derives from the built-in exception a plain
Python caller would expect, so `except ValueError` keeps working.
"""

from __future__ import annotations

__all__ = [
    "InvalidEmbedding",
    "InvalidFingerprint",
    "InvalidQuery",
    "SimilarityError",
    "UnknownCohort",
    "UnknownSystem",
]


class SimilarityError(Exception):
    """Base of every error the similarity engine raises on purpose."""


class InvalidQuery(SimilarityError, ValueError):
    """A query the engine cannot answer as asked: a bad k, threshold, selector or vector."""


class InvalidEmbedding(SimilarityError, ValueError):
    """An embedding offered to the index has the wrong length or non-finite values."""


class InvalidFingerprint(SimilarityError, ValueError):
    """A fingerprint's KPI statistics are inconsistent (duplicates, negative variance, NaN)."""


class UnknownSystem(SimilarityError, LookupError):
    """The index holds no embedding for the system named."""

    def __init__(self, system_id: str) -> None:
        super().__init__(f"system {system_id!r} has no embedding in the similarity index")
        self.system_id = system_id


class UnknownCohort(SimilarityError, LookupError):
    """No cohort of the current clustering has the id named."""

    def __init__(self, cohort_id: str) -> None:
        super().__init__(f"cohort {cohort_id!r} does not exist in the current clustering")
        self.cohort_id = cohort_id
