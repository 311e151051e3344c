"""Every service's ``/metrics``: RPC counts, status codes and latency histograms after calls.

The five services run on real ports (as ``tests/orchestrator/workflow_suite.py`` serves
them) and each HTTP endpoint is scraped and parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from collections.abc import Mapping

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cfgclone.common.settings import load_settings
from cfgclone.common.store import Store
from cfgclone.v1 import collector_service_pb2 as collector_pb
from cfgclone.v1 import common_pb2
from cfgclone.v1 import fingerprint_service_pb2 as fingerprint_pb
from cfgclone.v1 import orchestrator_service_pb2 as orchestrator_pb
from cfgclone.v1 import predictor_service_pb2 as predictor_pb
from cfgclone.v1 import similarity_service_pb2 as similarity_pb
from tests.orchestrator.workflow_suite import running_services

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the series of ``name`` whose labels include ``labels``."""
    return sum(
        v
        for (n, have), v in samples.items()
        if n == name and set(labels.items()) <= set(dict(have).items())
    )


async def test_every_service_shows_rpc_latency_histograms_and_codes_after_a_call(
    store: Store,
) -> None:
    system = f"systems/metrics-{uuid.uuid4().hex[:6]}"
    async with running_services(store) as suite:
        await suite.collector.RegisterSystem(
            collector_pb.RegisterSystemRequest(system=common_pb2.System(name=system))
        )
        batch = common_pb2.SampleBatch(
            system=system,
            batch_id=uuid.uuid4().hex,
            series=[
                common_pb2.SampleSeries(
                    metric="system.cpu.utilization",
                    ts_unix_ns=[1_700_000_000_000_000_000 + i * 10**9 for i in range(5)],
                    values=[0.1, 0.2, 0.3, 0.4, 0.5],
                )
            ],
        )
        await suite.collector.WriteSamples(collector_pb.WriteSamplesRequest(batch=batch))
        refused = common_pb2.SampleBatch(
            system=system,
            batch_id=uuid.uuid4().hex,
            series=[common_pb2.SampleSeries(metric="x", ts_unix_ns=[1, 2], values=[1.0])],
        )
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await suite.collector.WriteSamples(collector_pb.WriteSamplesRequest(batch=refused))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        await suite.fingerprint.ListFingerprints(
            fingerprint_pb.ListFingerprintsRequest(parent=system)
        )
        await suite.similarity.ListCohorts(similarity_pb.ListCohortsRequest())
        await suite.predictor.ListChanges(predictor_pb.ListChangesRequest(parent="systems/-"))
        await suite.orchestrator.ListOperations(orchestrator_pb.ListOperationsRequest())
        scraped: Mapping[str, Samples] = {
            name: await asyncio.to_thread(scrape, url) for name, url in suite.http.items()
        }
    called = {
        "collector": ("cfgclone.v1.CollectorService", "WriteSamples"),
        "fingerprint": ("cfgclone.v1.FingerprintService", "ListFingerprints"),
        "similarity": ("cfgclone.v1.SimilarityService", "ListCohorts"),
        "predictor": ("cfgclone.v1.PredictorService", "ListChanges"),
        "orchestrator": ("cfgclone.v1.OrchestratorService", "ListOperations"),
    }
    assert set(scraped) == set(called)
    for name, (service, method) in called.items():
        samples = scraped[name]
        labels = {"grpc_service": service, "grpc_method": method, "grpc_type": "unary"}
        assert value(samples, "grpc_server_handling_seconds_count", **labels) >= 1, name
        assert value(samples, "grpc_server_handling_seconds_bucket", le="+Inf", **labels) >= 1
        assert value(samples, "grpc_server_started_total", **labels) >= 1, name
        assert value(samples, "grpc_server_handled_total", grpc_code="OK", **labels) >= 1, name
    collector = scraped["collector"]
    write = {"grpc_method": "WriteSamples"}
    assert value(collector, "grpc_server_handled_total", grpc_code="INVALID_ARGUMENT", **write) == 1
    assert value(collector, "cfgclone_samples_ingested_total") == 5
    assert value(collector, "cfgclone_samples_refused_total") == 1
    assert value(collector, "cfgclone_sample_batches_total", result="refused") == 1


def test_one_metrics_port_setting_for_every_service() -> None:
    assert load_settings("collector", [], {}).telemetry.metrics_port is None
    from_env = load_settings("fingerprint", [], {"CFGCLONE_METRICS_PORT": "9464"})
    assert from_env.telemetry.metrics_port == 9464
    flag = load_settings("predictor", ["--metrics-port", "0"], {"CFGCLONE_METRICS_PORT": "9464"})
    assert flag.telemetry.metrics_port == 0
