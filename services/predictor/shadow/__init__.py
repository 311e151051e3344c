"""Shadow prediction: try a change on a throw-away copy of the target and measure it.

``run_shadow_comparison`` makes a copy through a ``ShadowProvider``, runs the
target's load on it under the baseline and the candidate configuration in
turn, and returns the per-KPI samples of both sides (``ShadowRun``) for the
judge. Providers: PostgreSQL (a throw-away cluster with pgbench at the
target's recorded rate), the team's own script for any kind of system
(``CommandShadowProvider``), and a simulated system with known response
surfaces that honours the target's hardware and load.
"""

from __future__ import annotations

from cfgclone.predictor.shadow.cluster import (
    ClusterSettings,
    ThrowawayCluster,
    find_postgres_bin_dir,
    throwaway_cluster,
)
from cfgclone.predictor.shadow.command import (
    CommandShadowProvider,
    CommandShadowSettings,
    command_words,
)
from cfgclone.predictor.shadow.comparison import run_shadow_comparison
from cfgclone.predictor.shadow.load import (
    OFFERED_LOAD_SERIES,
    rate_shortfalls,
    workload_at,
)
from cfgclone.predictor.shadow.model import (
    KPI_CPU,
    KPI_LATENCY_MEAN,
    KPI_LATENCY_P95,
    KPI_THROUGHPUT,
    SHADOW_KPIS,
    KpiSamples,
    RoundRecord,
    ShadowFailed,
    ShadowOutcome,
    ShadowRun,
    ShadowTarget,
    Side,
    WorkloadResult,
    WorkloadShape,
)
from cfgclone.predictor.shadow.postgres import PostgresShadowProvider, PostgresShadowSettings
from cfgclone.predictor.shadow.provider import ShadowCopy, ShadowProvider
from cfgclone.predictor.shadow.report import parse_kpi_report
from cfgclone.predictor.shadow.simulated import SimulatedShadowProvider

__all__ = [
    "KPI_CPU",
    "KPI_LATENCY_MEAN",
    "KPI_LATENCY_P95",
    "KPI_THROUGHPUT",
    "OFFERED_LOAD_SERIES",
    "SHADOW_KPIS",
    "ClusterSettings",
    "CommandShadowProvider",
    "CommandShadowSettings",
    "KpiSamples",
    "PostgresShadowProvider",
    "PostgresShadowSettings",
    "RoundRecord",
    "ShadowCopy",
    "ShadowFailed",
    "ShadowOutcome",
    "ShadowProvider",
    "ShadowRun",
    "ShadowTarget",
    "Side",
    "SimulatedShadowProvider",
    "ThrowawayCluster",
    "WorkloadResult",
    "WorkloadShape",
    "command_words",
    "find_postgres_bin_dir",
    "parse_kpi_report",
    "rate_shortfalls",
    "run_shadow_comparison",
    "throwaway_cluster",
    "workload_at",
]
