"""The universal request checks, on messages directly."""

from __future__ import annotations

import pytest

from cfgclone.common.errors import InvalidArgument
from cfgclone.common.message_checks import check_message, quote
from cfgclone.v1 import collector_service_pb2 as collector_pb
from cfgclone.v1 import common_pb2
from cfgclone.v1 import orchestrator_service_pb2 as orchestrator_pb
from cfgclone.v1 import predictor_service_pb2 as predictor_pb


def _refusal(message: object) -> tuple[str, str]:
    with pytest.raises(InvalidArgument) as caught:
        check_message(message)  # type: ignore[arg-type]
    [violation] = caught.value.violations
    return violation.field, violation.description


def _batch_request(series: int) -> collector_pb.StreamSamplesRequest:
    request = collector_pb.StreamSamplesRequest()
    request.batch.system = "systems/db-01"
    request.batch.batch_id = "b-1"
    for index in range(series):
        item = request.batch.series.add(metric=f"m{index}", unit="1", kind=1)
        item.ts_unix_ns.extend([1, 2])
        item.values.extend([0.5, float("nan")])  # sample values are the domain's to judge
    return request


def test_a_sample_batch_names_the_series_at_fault() -> None:
    request = _batch_request(2000)
    check_message(request)
    request.batch.series[1234].unit = "By\x00"
    assert _refusal(request)[0] == "batch.series[1234].unit"
    request.batch.series[1234].unit = "By"
    request.batch.series[1999].kind = 9  # type: ignore[assignment]
    assert _refusal(request) == ("batch.series[1999].kind", "9 is not a value of MetricKind")
    request.batch.series[1999].kind = 1  # type: ignore[assignment]
    request.batch.series[7].metric = "m" * 2000
    assert _refusal(request)[0] == "batch.series[7].metric"


def test_more_series_than_the_limit_are_refused() -> None:
    assert _refusal(_batch_request(10_001))[0] == "batch.series"


def test_controls_are_allowed_only_in_free_text() -> None:
    check_message(predictor_pb.AbortChangeRequest(name="systems/a/changes/1", reason="a\n\tb"))
    field, description = _refusal(predictor_pb.AbortChangeRequest(name="x", reason="a\x00b"))
    assert (field, "NUL" in description) == ("reason", True)
    assert _refusal(predictor_pb.GetChangeRequest(name="systems/a\n"))[0] == "name"


def test_numbers_enums_and_nested_content_are_checked_with_their_paths() -> None:
    options = orchestrator_pb.CloneOptions(max_fail_fraction=float("inf"))
    request = orchestrator_pb.CloneConfigurationRequest(source="systems/a", options=options)
    assert _refusal(request)[0] == "options.max_fail_fraction"
    configuration = common_pb2.Configuration(kind="k")
    configuration.content.update({"outer": {"list": [1, float("nan")]}})
    create = predictor_pb.CreateConfigurationRequest(
        parent="systems/a", configuration=configuration
    )
    assert _refusal(create)[0] == "configuration.content.outer.list[1]"
    propose = predictor_pb.ProposeChangeRequest(mode=42)  # type: ignore[arg-type]
    assert _refusal(propose) == ("mode", "42 is not a value of PredictionMode")


def test_durations_need_nanos_of_the_same_sign() -> None:
    request = collector_pb.QueryDownsampledRequest()
    request.bucket.seconds, request.bucket.nanos = 5, -1
    assert _refusal(request)[0] == "bucket"
    request.bucket.seconds, request.bucket.nanos = -5, -1
    check_message(request)


def test_a_quote_is_short_whatever_the_value() -> None:
    assert quote("systems/db-01") == "'systems/db-01'"
    long = quote("x" * 1_000_000)
    assert len(long) < 60
    assert "1000000 characters" in long
