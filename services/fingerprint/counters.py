"""The fingerprint service's own counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class FingerprintCounters:
    """``cfgclone_fingerprints_built_total{how}``: ``build`` on request, ``refine`` with new
    samples (on request or by the refinement loop)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.built = Counter(
            "cfgclone_fingerprints_built",
            "Fingerprints built or refined, by how.",
            ["how"],
            registry=self.registry,
        )
