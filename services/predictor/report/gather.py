"""Filling a :class:`~.model.ChangeReport` through the services' APIs.

The predictor gives the change, the diff and the policy; the collector the KPIs' samples
before the change and in its verification window; the fingerprint service the load-response
curves of the configurations before and after. KPI names come from the data (the
verification's KPIs, or the system's metrics that the policy has a threshold for), never
from a list in the code. A service that cannot answer leaves a note on the page instead of
its part.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf import json_format, timestamp_pb2

from cfgclone import vocabulary
from cfgclone.predictor.codec import StoredPolicy, policy_from_message
from cfgclone.predictor.report.model import (
    ChangeReport,
    Difference,
    Judgement,
    KpiJudgement,
    LoadResponse,
    RegimePoint,
    Series,
)
from cfgclone.v1 import collector_service_pb2 as collector_pb
from cfgclone.v1 import common_pb2
from cfgclone.v1 import fingerprint_service_pb2 as fingerprint_pb
from cfgclone.v1 import predictor_service_pb2 as predictor_pb

logger = logging.getLogger(__name__)

MIN_BASELINE = timedelta(minutes=5)
"""Shortest stretch before a change that the page plots as its baseline."""

BASELINE_WINDOWS = 10
"""The baseline plotted is this many verification windows long, at least ``MIN_BASELINE``."""

PAGE_SIZE = 10_000


@dataclass(frozen=True)
class Sources:
    """Stubs (or in-process stand-ins with the same methods) of the services a report reads."""

    predictor: Any
    collector: Any
    fingerprint: Any
    timeout: float = 30.0


def _time(stamp: timestamp_pb2.Timestamp, present: bool = True) -> datetime | None:
    if not present or (stamp.seconds == 0 and stamp.nanos == 0):
        return None
    return stamp.ToDatetime(tzinfo=UTC)


def _name(enum: Any, value: int, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix)


def _text(value: Any) -> str:
    plain: Any = json_format.MessageToDict(value) if value.WhichOneof("kind") else None
    if isinstance(plain, float) and plain.is_integer():
        return str(int(plain))
    return "(unset)" if plain is None else str(plain)


def _judgement(message: common_pb2.Prediction, policy: StoredPolicy | None) -> Judgement | None:
    if message.verdict == common_pb2.VERDICT_UNSPECIFIED:
        return None
    kpis = []
    for k in message.kpis:
        threshold = policy.policy.threshold_for(k.kpi) if policy is not None else None
        kpis.append(
            KpiJudgement(
                kpi=k.kpi,
                higher_is_better=k.direction == common_pb2.KPI_DIRECTION_HIGHER_IS_BETTER,
                relative_change=k.relative_change,
                interval_low=k.interval_low,
                interval_high=k.interval_high,
                confidence=k.confidence,
                verdict=_name(common_pb2.Verdict, k.verdict, "VERDICT_"),
                explanation=k.explanation,
                p_value=k.p_value if k.HasField("p_value") else None,
                evidence_count=k.evidence_count,
                threshold=threshold.max_relative_change if threshold is not None else None,
                critical=threshold.critical if threshold is not None else False,
            )
        )
    return Judgement(
        verdict=_name(common_pb2.Verdict, message.verdict, "VERDICT_"),
        mode=_name(common_pb2.PredictionMode, message.mode, "PREDICTION_MODE_"),
        explanation=message.explanation,
        policy=message.policy,
        kpis=tuple(kpis),
    )


class _Reader:
    def __init__(self, sources: Sources, system: str) -> None:
        self.sources = sources
        self.system = system
        self.notes: list[str] = []

    async def policy(self, name: str) -> StoredPolicy | None:
        # Predictions name a revision; the page reads the policy's thresholds from it.
        base = name.split("/revisions/")[0] if name else "policies/default"
        try:
            reply = await self.sources.predictor.GetPolicy(
                predictor_pb.GetPolicyRequest(name=base), timeout=self.sources.timeout
            )
        except grpc.aio.AioRpcError as error:
            self.notes.append(f"policy {base} unavailable: {error.details()}")
            return None
        return policy_from_message(reply.policy, name or base)

    async def differences(self, first: str, second: str) -> tuple[Difference, ...]:
        if not first or not second:
            return ()
        reply = await self.sources.predictor.DiffConfigurations(
            predictor_pb.DiffConfigurationsRequest(first=first, second=second),
            timeout=self.sources.timeout,
        )
        return tuple(Difference(d.key, _text(d.before), _text(d.after)) for d in reply.differences)

    async def applied(self, configuration: str) -> datetime | None:
        reply = await self.sources.predictor.GetConfiguration(
            predictor_pb.GetConfigurationRequest(name=configuration),
            timeout=self.sources.timeout,
        )
        found = reply.configuration
        return _time(found.apply_time, found.HasField("apply_time"))

    async def kpis_with_thresholds(self, policy: StoredPolicy | None) -> list[str]:
        if policy is None:
            return []
        try:
            reply = await self.sources.collector.ListMetrics(
                collector_pb.ListMetricsRequest(parent=self.system, page_size=1000),
                timeout=self.sources.timeout,
            )
        except grpc.aio.AioRpcError as error:
            self.notes.append(f"metrics of {self.system} unavailable: {error.details()}")
            return []
        names = [m.name.removeprefix("metrics/") for m in reply.metrics]
        return sorted(n for n in names if policy.policy.threshold_for(n) is not None)

    async def series(self, kpi: str, start: datetime, end: datetime) -> Series:
        request = collector_pb.QuerySamplesRequest(
            system=self.system, metric=kpi, page_size=PAGE_SIZE
        )
        request.start_time.FromDatetime(start)
        request.end_time.FromDatetime(end)
        times: list[datetime] = []
        values: list[float] = []
        while True:
            reply = await self.sources.collector.QuerySamples(request, timeout=self.sources.timeout)
            times += [datetime.fromtimestamp(ns / 1e9, UTC) for ns in reply.series.ts_unix_ns]
            values += list(reply.series.values)
            if not reply.next_page_token:
                return Series(kpi, tuple(times), tuple(values))
            request.page_token = reply.next_page_token

    async def all_series(
        self, kpis: Sequence[str], start: datetime, end: datetime, what: str
    ) -> tuple[Series, ...]:
        found = []
        for kpi in kpis:
            try:
                series = await self.series(kpi, start, end)
            except grpc.aio.AioRpcError as error:
                self.notes.append(f"{what} samples of {kpi} unavailable: {error.details()}")
                continue
            if series.values:
                found.append(series)
            else:
                self.notes.append(f"no {what} samples of {kpi}")
        return tuple(found)

    async def fingerprints(self) -> list[common_pb2.Fingerprint]:
        found: list[common_pb2.Fingerprint] = []
        request = fingerprint_pb.ListFingerprintsRequest(parent=self.system, page_size=100)
        try:
            while True:
                reply = await self.sources.fingerprint.ListFingerprints(
                    request, timeout=self.sources.timeout
                )
                found += reply.fingerprints
                if not reply.next_page_token:
                    return found
                request.page_token = reply.next_page_token
        except grpc.aio.AioRpcError as error:
            self.notes.append(f"fingerprints of {self.system} unavailable: {error.details()}")
            return found


def load_response(fingerprint: common_pb2.Fingerprint, kpis: Sequence[str]) -> list[LoadResponse]:
    """The KPIs' regimes of ``fingerprint`` as load-response curves (all KPIs when none match)."""
    profiles = [p for p in fingerprint.kpis if p.regimes]
    chosen = [p for p in profiles if p.kpi in kpis] or profiles
    curves = []
    for profile in chosen:
        bounds = vocabulary.bounds_of(profile.kpi)  # a share is drawn within [0, 1]
        points = sorted(
            (
                RegimePoint(
                    (r.load_low + r.load_high) / 2, bounds.clamp(r.mean), bounds.clamp(r.p95)
                )
                for r in profile.regimes
                if r.count > 0
            ),
            key=lambda p: p.load,
        )
        if points:
            curves.append(
                LoadResponse(
                    profile.kpi,
                    fingerprint.name,
                    fingerprint.configuration,
                    fingerprint.load_metric,
                    tuple(points),
                )
            )
    return curves


def _newest(
    fingerprints: Sequence[common_pb2.Fingerprint], configuration: str
) -> common_pb2.Fingerprint | None:
    matching = [f for f in fingerprints if f.configuration == configuration]
    return max(matching, key=lambda f: f.update_time.ToNanoseconds(), default=None)


def _decided_by(change: common_pb2.Change, policy_name: str) -> str:
    if change.override.actor:
        return f"{change.override.actor}: {change.override.reason}"
    if change.state in (
        common_pb2.CHANGE_STATE_HELD,
        common_pb2.CHANGE_STATE_PROPOSED,
        common_pb2.CHANGE_STATE_PREDICTING,
    ):
        return "nobody yet"
    return f"the guard, by {policy_name or 'policies/default'}"


async def gather(sources: Sources, name: str) -> ChangeReport:
    """The report of change ``name`` (``systems/X/changes/N``)."""
    reply = await sources.predictor.GetChange(
        predictor_pb.GetChangeRequest(name=name), timeout=sources.timeout
    )
    change: common_pb2.Change = reply.change
    system = change.name.split("/changes/")[0]
    reader = _Reader(sources, system)
    policy_name = change.prediction.policy or change.verification.policy
    policy = await reader.policy(policy_name)
    prediction = _judgement(change.prediction, policy)
    verification = _judgement(change.verification, policy)
    created = _time(change.create_time)
    applied = None if change.dry_run else await reader.applied(change.to_configuration)
    window: tuple[datetime, datetime] | None = None
    if verification is not None:
        kpis = [k.kpi for k in verification.kpis]
    else:
        kpis = await reader.kpis_with_thresholds(policy)
    baseline: tuple[Series, ...] = ()
    after: tuple[Series, ...] = ()
    length = policy.rules.window if policy is not None else timedelta(minutes=5)
    delay = policy.rules.delay if policy is not None else timedelta(0)
    stretch = max(length * BASELINE_WINDOWS, MIN_BASELINE)
    if applied is not None:
        window = (applied + delay, applied + delay + length)
        baseline = await reader.all_series(kpis, applied - stretch, applied, "baseline")
        after = await reader.all_series(kpis, window[0], window[1], "verification")
    elif created is not None:
        reader.notes.append("the change was never applied, so nothing was observed after it")
        baseline = await reader.all_series(kpis, created - stretch, created, "baseline")
    fingerprints = await reader.fingerprints()
    before_print = _newest(fingerprints, change.from_configuration)
    after_print = _newest(fingerprints, change.to_configuration)
    if before_print is None:
        reader.notes.append(f"no fingerprint of {change.from_configuration or 'the old version'}")
    if after_print is None:
        reader.notes.append(
            f"no fingerprint of {change.to_configuration} yet: it is built from samples "
            "under the new configuration"
        )
    return ChangeReport(
        name=change.name,
        system=system,
        state=_name(common_pb2.ChangeState, change.state, "CHANGE_STATE_"),
        state_reason=change.state_reason,
        requested_by=change.requested_by,
        decided_by=_decided_by(change, policy_name),
        created=created,
        updated=_time(change.update_time),
        applied=applied,
        from_configuration=change.from_configuration,
        to_configuration=change.to_configuration,
        dry_run=change.dry_run,
        differences=await reader.differences(change.from_configuration, change.to_configuration),
        prediction=prediction,
        verification=verification,
        window=window,
        baseline=baseline,
        after=after,
        curves_before=tuple(load_response(before_print, kpis)) if before_print else (),
        curves_after=tuple(load_response(after_print, kpis)) if after_print else (),
        notes=tuple(reader.notes),
    )
