"""The target's recorded load, as a shadow run reproduces it and checks it reached it.

A shadow is only evidence about the target when it runs at the target's load: a
change that costs nothing on an idle copy may saturate the real machine. The
predictor passes the recorded offered load (a rate per series of the metric
vocabulary, over the target's recent busy period); a provider drives its copy at
that rate, and every run checks that the copy actually carried it. A copy that
falls short says so, because its hardware, not the change, may be what limits it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from cfgclone import vocabulary
from cfgclone.predictor.shadow.model import KpiSamples, WorkloadShape

__all__ = [
    "DB_OFFERED_LOAD",
    "HTTP_OFFERED_LOAD",
    "OFFERED_LOAD_SERIES",
    "RATE_SHORTFALL",
    "rate_shortfalls",
    "shortfall",
    "workload_at",
]

DB_OFFERED_LOAD = vocabulary.POSTGRESQL_COMMITS.name
"""Committed transactions per second: the offered load of a database target."""
HTTP_OFFERED_LOAD = vocabulary.HTTP_REQUEST_RATE.name
"""Requests per second: the offered load of a web target."""
OFFERED_LOAD_SERIES: tuple[str, ...] = vocabulary.OFFERED_LOAD
"""The vocabulary's offered-load series, in its order of preference."""

_SLOW_TRANSACTION_S = 0.02
"""Transaction time the clients of a rate-limited workload are provisioned for."""
_MOST_CLIENTS = 64

RATE_SHORTFALL = 0.10
"""Largest share of the recorded rate a shadow run may fall short by and still count as
having carried the target's load."""


def workload_at(profile: Mapping[str, float], default: WorkloadShape) -> WorkloadShape:
    """``default`` rate-limited to the recorded rate of the first offered-load series.

    A rate-limited client runs one transaction at a time, so there are enough clients
    for the rate at up to ``_SLOW_TRANSACTION_S`` a transaction (idle ones cost
    nothing); a shortfall then means the copy is too slow, not the load generator
    too thin. With no recorded offered load the default stands (an unlimited
    benchmark), and the comparison's evidence says the copy ran at its own pace.
    """
    for series in OFFERED_LOAD_SERIES:
        rate = profile.get(series)
        if rate is not None and rate > 0:
            needed = math.ceil(rate * _SLOW_TRANSACTION_S)
            return WorkloadShape(
                clients=max(default.clients, min(needed, _MOST_CLIENTS)),
                rate_tps=rate,
                threads=default.threads,
                script=default.script,
            )
    return default


def rate_shortfalls(profile: Mapping[str, float], samples: KpiSamples) -> dict[str, str]:
    """Series of ``profile`` whose measured mean rate fell short of the recorded rate.

    Each note says what was asked and what was reached, for the evidence; a series
    the run did not report is not judged here.
    """
    notes: dict[str, str] = {}
    for series, wanted in profile.items():
        reached = samples.get(series)
        if not reached:
            continue
        note = shortfall(wanted, sum(reached) / len(reached))
        if note is not None:
            notes[series] = note
    return notes


def shortfall(wanted: float, reached: float) -> str | None:
    """Why a run that reached ``reached`` per second did not carry ``wanted``; None if it did."""
    if wanted <= 0 or reached >= wanted * (1.0 - RATE_SHORTFALL):
        return None
    return (
        f"the shadow reached {reached:.4g}/s of the target's recorded {wanted:.4g}/s: "
        "its hardware cannot carry the target's load, so it ran saturated where the "
        "target does not"
    )
