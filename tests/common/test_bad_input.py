"""Each class of bad input, through the public API: refused with INVALID_ARGUMENT naming the
field, a short message, and nothing stored."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import psycopg
import pytest
from grpc_status import rpc_status

from cfgclone.common.errors import field_violations
from cfgclone.common.store import Store
from cfgclone.v1 import collector_service_pb2 as collector_pb
from cfgclone.v1 import common_pb2
from cfgclone.v1 import fingerprint_service_pb2 as fingerprint_pb
from cfgclone.v1 import orchestrator_service_pb2 as orchestrator_pb
from cfgclone.v1 import predictor_service_pb2 as predictor_pb
from tests.orchestrator.workflow_suite import Suite, running_services, unique

MAX_DETAILS_CHARS = 400
"""Longest status message a refusal may carry: the field, what is wrong, a short quote."""


@pytest.fixture(scope="module")
async def suite(store: Store) -> AsyncIterator[Suite]:
    async with running_services(store) as running:
        yield running


async def _register(suite: Suite, system_id: str) -> None:
    await suite.collector.RegisterSystem(
        collector_pb.RegisterSystemRequest(
            system=common_pb2.System(name=f"systems/{system_id}", hostname=system_id)
        )
    )


async def _refused(call: Any, field: str) -> grpc.aio.AioRpcError:
    """Await ``call``; assert INVALID_ARGUMENT with one violation naming ``field``."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    status = rpc_status.from_call(error)
    assert status is not None
    assert [v.field for v in field_violations(status)] == [field], error.details()
    assert len(error.details() or "") <= MAX_DETAILS_CHARS
    trailer = sum(len(k) + len(v) for k, v in (error.trailing_metadata() or ()))
    assert trailer < 2048
    return error


def _count(store: Store, query: str, *params: object) -> int:
    with psycopg.connect(store.url) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


def _systems_named(store: Store, system_id: str) -> int:
    return _count(store, "SELECT count(*) FROM systems WHERE system_id LIKE %s", f"{system_id}%")


async def test_nul_in_a_hostname_is_refused_and_nothing_is_stored(
    suite: Suite, store: Store
) -> None:
    system_id = unique("nul")
    request = collector_pb.RegisterSystemRequest(
        system=common_pb2.System(name=f"systems/{system_id}", hostname="h\x00x")
    )
    error = await _refused(suite.collector.RegisterSystem(request), "system.hostname")
    assert "NUL" in (error.details() or "")
    assert _systems_named(store, system_id) == 0


async def test_a_name_with_a_trailing_newline_is_refused_not_stored_without_it(
    suite: Suite, store: Store
) -> None:
    system_id = unique("newline")
    request = collector_pb.RegisterSystemRequest(
        system=common_pb2.System(name=f"systems/{system_id}\n", hostname="h")
    )
    await _refused(suite.collector.RegisterSystem(request), "system.name")
    assert _systems_named(store, system_id) == 0


async def test_a_megabyte_name_is_invalid_argument_with_a_short_quote(suite: Suite) -> None:
    name = "systems/" + "a" * (1 << 20)
    error = await _refused(
        suite.collector.GetSystem(collector_pb.GetSystemRequest(name=name)), "name"
    )
    assert "1048584 characters" in (error.details() or "")


@pytest.mark.parametrize(
    ("system", "field"),
    [
        (common_pb2.System(hostname="h" * (1 << 20)), "system.hostname"),
        (common_pb2.System(labels={"team": "v" * (5 << 20)}), "system.labels['team']"),
        (common_pb2.System(disks=[common_pb2.Disk(device="sda")] * 20_000), "system.disks"),
        (common_pb2.System(labels={f"k{i}": "v" for i in range(65)}), "system.labels"),
    ],
    ids=["1MB-hostname", "5MB-label", "20000-disks", "65-labels"],
)
async def test_size_limits_refuse_oversized_fields(
    suite: Suite, store: Store, system: common_pb2.System, field: str
) -> None:
    system_id = unique("big")
    system.name = f"systems/{system_id}"
    await _refused(
        suite.collector.RegisterSystem(collector_pb.RegisterSystemRequest(system=system)), field
    )
    assert _systems_named(store, system_id) == 0


@pytest.mark.parametrize(
    ("start", "field"),
    [
        ({"seconds": 10**12}, "start_time"),
        ({"seconds": 1_700_000_000, "nanos": -5}, "start_time"),
        ({"seconds": -62_135_596_801}, "start_time"),
    ],
)
async def test_timestamps_outside_protobufs_range_are_refused(
    suite: Suite, start: dict[str, int], field: str
) -> None:
    request = collector_pb.QuerySamplesRequest(system="systems/x", metric="system.cpu.utilization")
    request.start_time.seconds = start["seconds"]
    request.start_time.nanos = start.get("nanos", 0)
    request.end_time.seconds = 1_800_000_000
    await _refused(suite.collector.QuerySamples(request), field)


async def test_a_duration_beyond_ten_thousand_years_is_refused(suite: Suite) -> None:
    request = collector_pb.QueryDownsampledRequest(
        system="systems/x", metric="system.cpu.utilization"
    )
    request.start_time.seconds = 1_700_000_000
    request.end_time.seconds = 1_700_003_600
    request.bucket.seconds = 10**15
    await _refused(suite.collector.QueryDownsampled(request), "bucket")


async def test_changes_listed_with_an_out_of_range_time_are_refused(suite: Suite) -> None:
    request = predictor_pb.ListChangesRequest(parent="systems/-")
    request.end_time.seconds = 10**12
    await _refused(suite.predictor.ListChanges(request), "end_time")


def _policy(policy_id: str, **fields: Any) -> common_pb2.Policy:
    threshold = common_pb2.KpiThreshold(
        kpi="http.server.request.duration",
        direction=common_pb2.KPI_DIRECTION_LOWER_IS_BETTER,
        max_relative_change=fields.pop("max_relative_change", 0.1),
    )
    return common_pb2.Policy(name=f"policies/{policy_id}", thresholds=[threshold], **fields)


def _policies_named(store: Store, policy_id: str) -> int:
    return _count(store, "SELECT count(*) FROM policies WHERE policy_id = %s", policy_id)


async def test_a_nan_threshold_is_refused_and_the_policy_not_stored(
    suite: Suite, store: Store
) -> None:
    policy_id = unique("nan")
    request = predictor_pb.CreatePolicyRequest(
        policy=_policy(policy_id, max_relative_change=float("nan"))
    )
    await _refused(
        suite.predictor.CreatePolicy(request), "policy.thresholds[0].max_relative_change"
    )
    assert _policies_named(store, policy_id) == 0


@pytest.mark.parametrize(
    ("window", "field"),
    [
        ({"verification_window": {"seconds": -10}}, "policy.verification_window"),
        ({"verification_window": {"seconds": 0, "nanos": 0}}, "policy.verification_window"),
        ({"verification_delay": {"seconds": 0, "nanos": -5}}, "policy.verification_delay"),
        ({"verification_window": {"seconds": 400 * 86400}}, "policy.verification_window"),
        ({"on_nodata": 99}, "policy.on_nodata"),
    ],
    ids=["negative-window", "zero-window", "negative-delay", "400-day-window", "unknown-action"],
)
async def test_policy_values_that_make_no_sense_are_refused(
    suite: Suite, store: Store, window: dict[str, Any], field: str
) -> None:
    policy_id = unique("window")
    await _refused(
        suite.predictor.CreatePolicy(
            predictor_pb.CreatePolicyRequest(policy=_policy(policy_id, **window))
        ),
        field,
    )
    assert _policies_named(store, policy_id) == 0


async def test_configurations_with_nan_an_unknown_source_or_a_huge_parent_are_refused(
    suite: Suite, store: Store
) -> None:
    system_id = unique("conf")
    await _register(suite, system_id)
    parent = f"systems/{system_id}"
    nan = common_pb2.Configuration(kind="postgresql")
    nan.content.update({"a": float("nan")})
    unknown_source = common_pb2.Configuration(kind="postgresql", source=99)  # type: ignore[arg-type]
    unknown_source.content.update({"a": 1})
    huge_parent = common_pb2.Configuration(
        kind="postgresql", parent=f"{parent}/configurations/99999999999999999999"
    )
    huge_parent.content.update({"a": 1})
    long_key = common_pb2.Configuration(kind="postgresql")
    long_key.content.update({"k" * 100_000: 1})
    for configuration, field in (
        (nan, "configuration.content.a"),
        (unknown_source, "configuration.source"),
        (huge_parent, "configuration.parent"),
        (long_key, "configuration.content key"),
    ):
        request = predictor_pb.CreateConfigurationRequest(
            parent=parent, configuration=configuration
        )
        await _refused(suite.predictor.CreateConfiguration(request), field)
    stored = _count(
        store,
        "SELECT count(*) FROM configurations c JOIN systems s ON s.id = c.system_id "
        "WHERE s.system_id = %s",
        system_id,
    )
    assert stored == 0


async def test_clone_to_ten_thousand_targets_is_refused_with_a_small_trailer(
    suite: Suite,
) -> None:
    request = orchestrator_pb.CloneConfigurationRequest(
        source="systems/src", targets=[f"systems/t{i}" for i in range(10_000)]
    )
    await _refused(suite.orchestrator.CloneConfiguration(request), "targets")


async def test_an_unknown_load_metric_is_blamed_on_load_metric(suite: Suite) -> None:
    system_id = unique("load")
    await _register(suite, system_id)
    request = fingerprint_pb.BuildFingerprintRequest(
        system=f"systems/{system_id}", load_metric="no.such.metric"
    )
    await _refused(suite.fingerprint.BuildFingerprint(request), "load_metric")


def _token(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        _token({"o": 1e400, "q": "x"}),
        _token({"o": 10**20, "q": "x"}),
        _token([[[[[]]]]]),
        "[" * 100_000,
        "not-a-token",
    ],
    ids=["huge-float", "huge-offset", "nested-json", "deep-array", "garbage"],
)
async def test_forged_page_tokens_are_refused_naming_page_token(suite: Suite, token: str) -> None:
    await _refused(
        suite.collector.ListSystems(collector_pb.ListSystemsRequest(page_token=token)),
        "page_token",
    )
    await _refused(
        suite.predictor.ListChanges(
            predictor_pb.ListChangesRequest(parent="systems/-", page_token=token)
        ),
        "page_token",
    )


async def test_a_genuine_page_token_with_one_byte_changed_is_refused(suite: Suite) -> None:
    for _ in range(3):
        await _register(suite, unique("paged"))
    first = await suite.collector.ListSystems(collector_pb.ListSystemsRequest(page_size=1))
    token = first.next_page_token
    assert token
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[10] ^= 0x01  # inside the signed offset
    forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    await _refused(
        suite.collector.ListSystems(
            collector_pb.ListSystemsRequest(page_size=1, page_token=forged)
        ),
        "page_token",
    )
    second = await suite.collector.ListSystems(
        collector_pb.ListSystemsRequest(page_size=1, page_token=token)
    )
    assert second.systems[0].name != first.systems[0].name


FIRST_SECOND = -62_135_596_800
LAST_SECOND = 253_402_300_799


async def test_times_at_the_edges_of_protobufs_range_never_answer_internal(suite: Suite) -> None:
    """The first and last valid instants are accepted by the checks; what follows must not
    overflow into INTERNAL."""
    system_id = unique("edge")
    await _register(suite, system_id)
    system = f"systems/{system_id}"
    batch = common_pb2.SampleBatch(system=system, batch_id=f"{system_id}-1")
    series = batch.series.add(metric="system.cpu.utilization", unit="1")
    series.ts_unix_ns.extend([1_700_000_000_000_000_000, 1_700_000_001_000_000_000])
    series.values.extend([0.1, 0.2])
    await suite.collector.WriteSamples(collector_pb.WriteSamplesRequest(batch=batch))
    calls = []
    for start, end in ((FIRST_SECOND, LAST_SECOND), (FIRST_SECOND, FIRST_SECOND + 1)):
        query = collector_pb.QuerySamplesRequest(system=system, metric="system.cpu.utilization")
        query.start_time.seconds, query.end_time.seconds = start, end
        calls.append(suite.collector.QuerySamples(query))
        downsampled = collector_pb.QueryDownsampledRequest(
            system=system, metric="system.cpu.utilization"
        )
        downsampled.start_time.seconds, downsampled.end_time.seconds = start, end
        downsampled.bucket.seconds = 315_576_000_000
        calls.append(suite.collector.QueryDownsampled(downsampled))
        build = fingerprint_pb.BuildFingerprintRequest(system=system)
        build.start_time.seconds, build.end_time.seconds = start, end
        calls.append(suite.fingerprint.BuildFingerprint(build))
        changes = predictor_pb.ListChangesRequest(parent="systems/-")
        changes.start_time.seconds, changes.end_time.seconds = start, end
        calls.append(suite.predictor.ListChanges(changes))
    for edge in (FIRST_SECOND, LAST_SECOND):
        build = fingerprint_pb.BuildFingerprintRequest(system=system)
        build.end_time.seconds = edge
        calls.append(suite.fingerprint.BuildFingerprint(build))
        refine = fingerprint_pb.RefineFingerprintRequest(name=f"{system}/fingerprints/-")
        refine.end_time.seconds = edge
        calls.append(suite.fingerprint.RefineFingerprint(refine))
        configuration = common_pb2.Configuration(kind="postgresql")
        configuration.content.update({"work_mem": "4MB"})
        configuration.apply_time.seconds = edge
        calls.append(
            suite.predictor.CreateConfiguration(
                predictor_pb.CreateConfigurationRequest(parent=system, configuration=configuration)
            )
        )
    codes = []
    for call in calls:
        try:
            await call
            codes.append(grpc.StatusCode.OK)
        except grpc.aio.AioRpcError as error:
            codes.append(error.code())
    assert grpc.StatusCode.INTERNAL not in codes
    assert grpc.StatusCode.UNKNOWN not in codes


async def test_bytes_that_are_not_a_message_are_invalid_argument_not_unknown(
    suite: Suite,
) -> None:
    channel = suite.channels["collector"]
    unary = channel.unary_unary("/cfgclone.v1.CollectorService/GetSystem")
    stream = channel.stream_unary("/cfgclone.v1.CollectorService/StreamSamples")
    for call in (unary(b"\x0a\x05ab"), stream(iter([b"\xff\xff\xff"]))):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid protobuf message" in (caught.value.details() or "")
