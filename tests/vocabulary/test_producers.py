"""Every producer speaks the vocabulary, and docs/metrics.md lists exactly its names."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from cfgclone import vocabulary
from cfgclone.behaviour import DEFAULT_LOAD_METRIC
from cfgclone.behaviour.embedding import STANDARD_KPIS
from cfgclone.collector.host_metrics import HISTOGRAMS, HOST_METRICS, NODE_EXPORTER
from cfgclone.predictor.shadow import SHADOW_KPIS
from cfgclone.predictor.shadow.pgbench import TransactionLog, interval_samples
from cfgclone.simulation import SimulatedSystem
from cfgclone.simulation import fleet as simulation

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def test_the_docs_list_exactly_the_vocabulary_with_its_units() -> None:
    rows = re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|", DOC.read_text(encoding="utf-8"), re.M)
    documented = {name.replace('"<name>"', '""'): unit for name, unit in rows if name != "series"}
    assert documented == {name: spec.unit for name, spec in vocabulary.METRICS.items()}


def test_host_metrics_node_exporter_and_histogram_tables_map_into_the_vocabulary() -> None:
    names = [m.name for m in HOST_METRICS] + [m.name for m in NODE_EXPORTER.values()]
    for mapping in HISTOGRAMS.values():
        names += [s.name for s in (mapping.duration, mapping.rate, mapping.error_ratio) if s]
    assert all(vocabulary.is_known(name) for name in names), names


def test_the_fingerprint_knows_every_standard_kpi_and_its_default_load() -> None:
    assert all(vocabulary.is_known(name) for name in STANDARD_KPIS)
    assert vocabulary.is_known(DEFAULT_LOAD_METRIC)
    assert set(vocabulary.OFFERED_LOAD) <= set(vocabulary.METRICS)


def test_the_shadow_providers_report_vocabulary_names() -> None:
    assert all(vocabulary.is_known(name) for name in SHADOW_KPIS)
    log = TransactionLog(end_s=np.array([0.5, 1.2]), latency_ms=np.array([2.0, 4.0]), failed=0)
    produced = interval_samples(log, duration_s=2.0, interval_s=1.0)
    assert produced
    assert all(vocabulary.is_known(name) for name in produced)


def test_the_simulation_reports_vocabulary_names() -> None:
    machine = simulation.SimulatedMachine("sim-1")
    kpis = simulation.machine_kpis(
        machine,
        machine.configuration,
        np.array([100.0, 200.0]),
        np.random.default_rng(0),
        SimulatedSystem(),
    )
    assert kpis
    assert all(vocabulary.is_known(name) for name in kpis)
    assert simulation.LOAD in vocabulary.METRICS


@pytest.mark.parametrize(
    ("series", "known"),
    [
        ('http.client.request.duration{probe="api"}', True),
        ('cfgclone.probe.tcp.connect.duration{probe="db-primary"}', True),
        ('http.client.request.duration{other="api"}', False),
        ('queue_depth{queue="orders"}', False),
        ("system.cpu.utilization", True),
    ],
)
def test_labelled_families_are_known_with_their_label_only(series: str, known: bool) -> None:
    assert vocabulary.is_known(series) is known


def test_series_names_round_trip_with_escaped_labels() -> None:
    name = vocabulary.series("queue_depth", {"queue": 'or"ders', "a": "x\\y"})
    assert name == 'queue_depth{a="x\\\\y",queue="or\\"ders"}'
    assert vocabulary.parse_series(name) == ("queue_depth", (("a", "x\\y"), ("queue", 'or"ders')))
    with pytest.raises(ValueError, match="not a series"):
        vocabulary.parse_series("queue_depth{queue=orders}")


def test_the_load_metric_is_offered_load_first_and_cpu_last() -> None:
    present = {"system.cpu.utilization", "postgresql.commits", "http.server.request.rate"}
    assert vocabulary.choose_load_metric(present) == "http.server.request.rate"
    assert vocabulary.choose_load_metric(present, ["postgresql.commits"]) == "postgresql.commits"
    assert vocabulary.choose_load_metric({"system.cpu.utilization"}) == "system.cpu.utilization"
    assert vocabulary.choose_load_metric({"custom"}) is None


def test_shares_lie_between_zero_and_one_and_custom_metrics_are_unbounded() -> None:
    for share in (
        vocabulary.CPU_UTILIZATION,
        vocabulary.MEMORY_UTILIZATION,
        vocabulary.HTTP_ERROR_RATIO,
    ):
        assert vocabulary.bounds_of(share.name) == vocabulary.SHARE
        assert vocabulary.bounds_of(share.name).clamp(1.005) == 1.0
        assert vocabulary.bounds_of(share.name).clamp(-0.0001) == 0.0
    assert vocabulary.bounds_of('cfgclone.probe.tcp.up{probe="db"}') == vocabulary.SHARE
    assert vocabulary.bounds_of(vocabulary.HTTP_REQUEST_DURATION.name).clamp(-1.0) == 0.0
    assert vocabulary.bounds_of(vocabulary.HTTP_REQUEST_DURATION.name).clamp(90.0) == 90.0
    assert vocabulary.bounds_of("app.queue.depth").clamp(-3.0) == -3.0
    # Every share of the vocabulary says so in its description, and only those.
    for spec in vocabulary.METRICS.values():
        assert (spec.bounds == vocabulary.SHARE) == spec.description.endswith(
            ("0 to 1", "0 when it did not")
        ), spec.name
