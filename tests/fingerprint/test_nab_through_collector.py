"""Real NAB series sent through the collector, then fingerprinted by the fingerprint service.

Each series of ``../shared/data/nab`` (see its README) is the only metric of a system of
its own: the system is registered and the series written through the collector's gRPC
service, then BuildFingerprint is asked for that system with the series as its load
metric. The quality report must state exactly the samples and the load range of the
CSV, duplicate and out-of-order rows included. Tests skip when the data is absent.

The series date from 2013 and 2014, so the collector here keeps samples for a century
instead of its default 30 days; its retention would otherwise delete them.
"""

from __future__ import annotations

import csv
import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from cfgclone.collector.main import build_services as collector_services
from cfgclone.collector.retention import SampleRetention
from cfgclone.common.settings import DatabaseSettings, ServiceSettings
from cfgclone.common.store import Store
from cfgclone.fingerprint.main import build_services as fingerprint_services
from cfgclone.v1 import collector_service_pb2 as collector_pb
from cfgclone.v1 import collector_service_pb2_grpc as collector_grpc
from cfgclone.v1 import common_pb2
from cfgclone.v1 import fingerprint_service_pb2 as fingerprint_pb
from cfgclone.v1 import fingerprint_service_pb2_grpc as fingerprint_grpc
from tests.conftest import serve_in_process, service_settings, temporary_database

NAB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nab"
SERIES = (
    sorted(NAB.glob("*.csv")) + sorted((NAB / "realKnownCause").glob("*.csv"))
    if NAB.is_dir()
    else []
)
STEP_NS = 300 * 1_000_000_000
"""NAB series are sampled every 5 minutes."""
RETENTION = timedelta(days=36_500)

pytestmark = pytest.mark.skipif(not NAB.is_dir(), reason="shared NAB data not available")


@dataclass(frozen=True)
class NabSeries:
    """One CSV of ``timestamp,value`` rows, as numpy columns in file order."""

    path: Path
    ts_unix_ns: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]

    @classmethod
    def read(cls, path: Path) -> NabSeries:
        with path.open() as handle:
            rows = list(csv.DictReader(handle))
        stamps = np.array([row["timestamp"].replace(" ", "T") for row in rows], "datetime64[ns]")
        values = np.array([float(row["value"]) for row in rows])
        return cls(path, stamps.astype(np.int64), values)

    @property
    def system(self) -> str:
        return "systems/nab-" + self.path.stem.lower().replace("_", "-")

    @property
    def metric(self) -> str:
        return "nab." + self.path.stem.replace("-", "_")


@dataclass(frozen=True)
class Services:
    """Stubs on real channels to a collector and a fingerprint service on one database.

    The async stub types exist only in the generated ``.pyi`` files; annotations are
    not evaluated at run time.
    """

    collector: collector_grpc.CollectorServiceAsyncStub
    fingerprints: fingerprint_grpc.FingerprintServiceAsyncStub


def _settings(service: str, url: str, options: dict[str, str]) -> ServiceSettings:
    base = service_settings(service, url)
    database = DatabaseSettings(url=url, retention=RETENTION)
    return dataclasses.replace(base, database=database, options=options)


@pytest.fixture(scope="module")
async def services() -> AsyncIterator[Services]:
    """A collector (scraper off) and a fingerprint service, each on its own port."""
    with temporary_database() as url:
        store = Store(url, min_size=1, max_size=4, name="nab")
        await store.open(wait=True)
        try:
            await store.migrate()
            # Today's partitions exist before the collector's own maintenance starts.
            await SampleRetention(store, RETENTION).run_once()
            collector = await collector_services(
                _settings("collector", url, {"SCRAPE": "0"}), store
            )
            fingerprint = await fingerprint_services(
                _settings("fingerprint", url, {"REFINE_INTERVAL_SECONDS": "0"}), store
            )
            async with (
                serve_in_process(collector) as (_, collector_channel),
                serve_in_process(fingerprint) as (_, fingerprint_channel),
            ):
                yield Services(
                    collector_grpc.CollectorServiceStub(collector_channel),
                    fingerprint_grpc.FingerprintServiceStub(fingerprint_channel),
                )
        finally:
            await store.close()


def _stamp(ts_unix_ns: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(ts_unix_ns)
    return stamp


async def _ingest(collector: collector_grpc.CollectorServiceAsyncStub, series: NabSeries) -> int:
    """Register the series' system and write the series as one batch; samples stored."""
    await collector.RegisterSystem(
        collector_pb.RegisterSystemRequest(system=common_pb2.System(name=series.system))
    )
    columns = common_pb2.SampleSeries(
        metric=series.metric,
        kind=common_pb2.METRIC_KIND_GAUGE,
        ts_unix_ns=series.ts_unix_ns.tolist(),
        values=series.values.tolist(),
    )
    batch = common_pb2.SampleBatch(
        system=series.system, batch_id=uuid.uuid4().hex, series=[columns]
    )
    reply = await collector.WriteSamples(collector_pb.WriteSamplesRequest(batch=batch))
    return reply.stored_samples


@pytest.mark.parametrize("path", SERIES, ids=lambda path: path.name)
async def test_fingerprint_of_a_real_series_reports_its_samples_and_load_range(
    services: Services, path: Path
) -> None:
    series = NabSeries.read(path)
    assert await _ingest(services.collector, series) == series.values.size

    reply = await services.fingerprints.BuildFingerprint(
        fingerprint_pb.BuildFingerprintRequest(
            system=series.system,
            start_time=_stamp(int(series.ts_unix_ns.min())),
            end_time=_stamp(int(series.ts_unix_ns.max()) + STEP_NS),
            load_metric=series.metric,
        )
    )

    fingerprint = reply.fingerprint
    assert fingerprint.load_metric == series.metric
    assert fingerprint.quality.samples == series.values.size
    assert fingerprint.quality.load_min == float(np.min(series.values))
    assert fingerprint.quality.load_max == float(np.max(series.values))
