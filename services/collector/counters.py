"""The collector's own counters: samples stored and samples refused."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class IngestCounters:
    """``cfgclone_samples_ingested_total``, ``cfgclone_samples_refused_total`` and
    ``cfgclone_sample_batches_total{result}`` (``stored``, ``duplicate``, ``refused``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.ingested = Counter(
            "cfgclone_samples_ingested",
            "Samples stored (a resent batch counts once).",
            registry=self.registry,
        )
        self.refused = Counter(
            "cfgclone_samples_refused",
            "Samples in batches refused as invalid.",
            registry=self.registry,
        )
        self.batches = Counter(
            "cfgclone_sample_batches",
            "Sample batches by result: stored, duplicate or refused.",
            ["result"],
            registry=self.registry,
        )
