"""What the agent shows Prometheus: the depth of its spool and what it had to drop."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from cfgclone.collector.agent_spool import Spool


def spool_registry(spool: Spool) -> CollectorRegistry:
    """Gauges read from ``spool`` at each scrape.

    ``cfgclone_agent_spool_batches``, ``cfgclone_agent_spool_samples`` and
    ``cfgclone_agent_spool_bytes`` are waiting for the collector; the
    ``cfgclone_agent_spool_dropped_*`` gauges count what a full spool dropped since start.
    """
    registry = CollectorRegistry()
    readings = {
        "batches": ("Sample batches waiting in the spool.", lambda: spool.pending_batches),
        "samples": ("Samples waiting in the spool.", lambda: spool.pending_samples),
        "bytes": ("Bytes of batches waiting in the spool.", lambda: spool.pending_bytes),
        "dropped_batches": (
            "Batches dropped since start because the spool was full.",
            lambda: spool.dropped_batches,
        ),
        "dropped_samples": (
            "Samples dropped since start because the spool was full.",
            lambda: spool.dropped_samples,
        ),
    }
    for name, (description, read) in readings.items():
        Gauge(f"cfgclone_agent_spool_{name}", description, registry=registry).set_function(read)
    return registry
