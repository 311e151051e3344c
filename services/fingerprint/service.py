"""The fingerprint service's operations: build, refine, read and compare.

Samples come from the samples table by binary COPY; the model code is pure and
knows nothing of the store. Model errors become the project's errors here:
too little data is FAILED_PRECONDITION with what is missing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cfgclone.behaviour import comparison
from cfgclone.behaviour.build import (
    SampleSeries,
    build_fingerprint,
    refine_fingerprint,
    resolve_load_metric,
)
from cfgclone.behaviour.codec import fingerprint_from_proto, fingerprint_to_proto, scale_of
from cfgclone.behaviour.errors import IncompatibleFingerprint, InsufficientData, InvalidSamples
from cfgclone.behaviour.model import Fingerprint
from cfgclone.behaviour.regimes import LoadScale
from cfgclone.collector.reads import MetricSamples, metric_known, read_samples
from cfgclone.common.errors import CfgcloneError, FailedPrecondition, InvalidArgument, NotFound
from cfgclone.common.message_checks import quote
from cfgclone.common.requests import Page
from cfgclone.common.store import Store
from cfgclone.fingerprint import repository
from cfgclone.fingerprint.builds import BuildPhase, Tracker
from cfgclone.fingerprint.settings import FingerprintSettings
from cfgclone.v1 import common_pb2

logger = logging.getLogger(__name__)


@contextmanager
def model_errors(subject: str) -> Iterator[None]:
    """Turn the model's errors into the project's, naming what they are about."""
    try:
        yield
    except InsufficientData as error:
        raise FailedPrecondition(
            f"{subject}: {error}", reason="INSUFFICIENT_DATA", metadata={"subject": subject}
        ) from error
    except IncompatibleFingerprint as error:
        raise FailedPrecondition(
            f"{subject}: {error}", reason="INCOMPATIBLE_FINGERPRINT", metadata={"subject": subject}
        ) from error
    except InvalidSamples as error:
        raise InvalidArgument(f"{subject}: {error}", reason="INVALID_SAMPLES") from error


def _aligned(moment: datetime, align_ns: int) -> datetime:
    ns = int(moment.timestamp() * 1e9)
    return datetime.fromtimestamp((ns - ns % align_ns) / 1e9, UTC)


def _series(samples: Mapping[str, MetricSamples]) -> dict[str, SampleSeries]:
    return {name: SampleSeries(s.ts_unix_ns, s.values) for name, s in samples.items()}


def _decay(settings: FingerprintSettings, elapsed: timedelta) -> float:
    """Weight left to old behaviour after ``elapsed``: halves every half-life."""
    if settings.half_life is None:
        return 1.0
    seconds = max(elapsed.total_seconds(), 0.0)
    return float(math.pow(0.5, seconds / settings.half_life.total_seconds()))


def _message(
    fingerprint: Fingerprint,
    configuration: str,
    settings: FingerprintSettings,
    window_start: datetime,
    window_end: datetime,
) -> common_pb2.Fingerprint:
    message = fingerprint_to_proto(
        fingerprint, configuration=configuration, min_regime_count=settings.min_regime_count
    )
    message.window_start.FromDatetime(window_start)
    message.window_end.FromDatetime(window_end)
    return message


@dataclass(frozen=True)
class BuildRequest:
    """What to build a fingerprint of."""

    system_id: str
    configuration_version: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    load_metric: str | None = None


async def _system_scale(
    store: Store, system: repository.SystemRecord, load_metric: str, loads: SampleSeries
) -> LoadScale:
    """The system's load scale on ``load_metric``, so that all its fingerprints compare
    regime by regime: kept since its first fingerprint, else that of a fingerprint from
    before scales were kept, else one spanning ``loads`` (kept once a fingerprint on it
    is stored, see :func:`_keep_scale`)."""
    async with store.connection() as conn:
        kept = await repository.kept_load_scale(conn, system, load_metric)
        if kept is not None:
            return kept
        newest = await repository.newest_on(conn, system, load_metric)
    return scale_of(newest) if newest is not None else LoadScale.spanning(loads.values)


def _refuse_empty_window(request: BuildRequest, start: datetime, end: datetime) -> None:
    """The error for a window that ends before it starts, blaming a field the caller gave."""
    if request.start is not None:
        raise InvalidArgument.for_field(
            "start_time", f"must be before the end of the window ({end.isoformat()})"
        )
    if request.end is not None:
        raise InvalidArgument.for_field(
            "end_time", f"must be after the start of the window ({start.isoformat()})"
        )
    raise FailedPrecondition(
        f"systems/{request.system_id}: the window would start at {start.isoformat()} (when its "
        f"configuration was applied), after it ends at {end.isoformat()}; give start_time",
        reason="INSUFFICIENT_DATA",
    )


async def build(
    store: Store,
    settings: FingerprintSettings,
    request: BuildRequest,
    tracker: Tracker | None = None,
) -> common_pb2.Fingerprint:
    """Build and store the fingerprint of a system's configuration over a window;
    ``tracker`` hears of each phase the build reaches, and of its end."""
    tracker = tracker or Tracker()
    try:
        message = await _build(store, settings, request, tracker)
    except CfgcloneError as error:
        tracker.failed(error.message)
        raise
    except BaseException:
        tracker.failed("the build stopped before it ended")
        raise
    tracker.succeeded(message.name)
    return message


async def _build(
    store: Store,
    settings: FingerprintSettings,
    request: BuildRequest,
    tracker: Tracker,
) -> common_pb2.Fingerprint:
    async with store.connection() as conn:
        system = await repository.system(conn, request.system_id)
        if request.load_metric and not await metric_known(conn, request.load_metric):
            raise InvalidArgument.for_field(
                "load_metric",
                f"no samples of {quote(request.load_metric)} were ever stored; name a metric "
                "the collector has (ListMetrics)",
            )
        config = await repository.configuration(conn, system, request.configuration_version)
        end = _aligned(request.end or datetime.now(UTC), settings.align_ns)
        start = request.start or (config.applied_at if config and config.applied_at else None)
        start = _aligned(start or end - settings.default_window, settings.align_ns)
        if start >= end:
            _refuse_empty_window(request, start, end)
        samples = await read_samples(conn, system.system_id, start, end)
    await tracker.reached(BuildPhase.REGIMES, samples=sum(len(s) for s in samples.values()))
    subject = f"{system.name} from {start.isoformat()} to {end.isoformat()}"
    if not samples:
        raise FailedPrecondition(
            f"{subject}: the window holds no samples; send samples to the collector or "
            "choose a window that has some",
            reason="INSUFFICIENT_DATA",
        )
    with model_errors(subject):
        series = _series(samples)
        load_metric = resolve_load_metric(
            series, request.load_metric or system.load_metric, settings.load_metrics
        )
        scale = await _system_scale(store, system, load_metric, series[load_metric])
        while True:
            fingerprint = build_fingerprint(
                series,
                load_metric=load_metric,
                scale=scale,
                system=system.profile,
                align_ns=settings.align_ns,
                min_regime_count=settings.min_regime_count,
            )
            await tracker.reached(BuildPhase.CURVES)
            fingerprint.curves  # noqa: B018 (computed now, so that it is a phase of its own)
            await tracker.reached(BuildPhase.EMBEDDING)
            version = config.version if config else None
            configuration = f"{system.name}/configurations/{version}" if version else ""
            message = _message(fingerprint, configuration, settings, start, end)
            await tracker.reached(BuildPhase.STORING)
            async with store.transaction() as conn:
                kept = await repository.load_scale(conn, system, load_metric, scale)
                if kept.same_as(scale):
                    stored = await repository.insert(conn, system, version, start, end, message)
                    return stored.message
            scale = kept  # another build kept its scale first: build on that one


async def refine(
    store: Store,
    settings: FingerprintSettings,
    system_id: str,
    fingerprint_id: str,
    end: datetime | None = None,
) -> tuple[common_pb2.Fingerprint, int]:
    """Merge the samples after a fingerprint's window into it; returns it and the samples merged.

    A fingerprint of a configuration version that a later version replaced takes no
    samples past the moment it was replaced. Work is proportional to the new samples
    only: the stored model is merged with a model of the new window, never rebuilt from
    all history.
    """
    async with store.connection() as conn:
        stored = await repository.get(conn, system_id, fingerprint_id)
        system = await repository.system(conn, system_id)
        new_end = _aligned(end or datetime.now(UTC), settings.align_ns)
        closed = await repository.closing_time(conn, system, stored.configuration_version)
        if closed is not None:
            new_end = min(new_end, closed)
        if new_end <= stored.window_end:
            return stored.message, 0
        samples = await read_samples(conn, system_id, stored.window_end, new_end)
    merged = sum(len(s) for s in samples.values())
    if merged == 0:
        return stored.message, 0
    subject = f"{stored.name} refined up to {new_end.isoformat()}"
    with model_errors(subject):
        current = fingerprint_from_proto(stored.message)
        refined = refine_fingerprint(
            current,
            _series(samples),
            decay=_decay(settings, new_end - stored.window_end),
            system=system.profile,
            align_ns=settings.align_ns,
            min_regime_count=settings.min_regime_count,
        )
    message = _message(
        refined, stored.message.configuration, settings, stored.window_start, new_end
    )
    async with store.connection() as conn:
        updated = await repository.update(conn, stored, new_end, message)
    return updated.message, merged


async def get(store: Store, system_id: str, fingerprint_id: str) -> common_pb2.Fingerprint:
    async with store.connection() as conn:
        return (await repository.get(conn, system_id, fingerprint_id)).message


async def list_page(
    store: Store, system_id: str | None, page: Page
) -> tuple[list[common_pb2.Fingerprint], str]:
    async with store.connection() as conn:
        found, more = await repository.page(conn, system_id, page)
    return [f.message for f in found], page.next_token(len(found), more)


async def compare_stored(
    store: Store, first: tuple[str, str], second: tuple[str, str]
) -> list[comparison.KpiDifference]:
    async with store.connection() as conn:
        a = await repository.get(conn, *first)
        b = await repository.get(conn, *second)
    with model_errors(f"comparing {a.name} with {b.name}"):
        return comparison.compare(
            fingerprint_from_proto(a.message), fingerprint_from_proto(b.message)
        )


def _progress(error: FailedPrecondition | InvalidArgument) -> str:
    """What a failed first build lacked, in the words ``fingerprint show`` prints."""
    cause = error.__cause__
    if isinstance(cause, InsufficientData):
        return cause.progress
    return "no samples yet under the configuration it runs now"


async def build_missing(store: Store, settings: FingerprintSettings) -> int:
    """Build the first fingerprint of every system that has samples under its current
    configuration and none yet; remember what a system still lacks. Returns how many."""
    async with store.connection() as conn:
        waiting = await repository.without_fingerprint(conn)
    built = 0
    for system_id in waiting:
        try:
            message = await build(store, settings, BuildRequest(system_id))
        except NotFound:
            continue  # deleted meanwhile
        except (FailedPrecondition, InvalidArgument) as error:
            # Too few samples yet, or none since the configuration was applied a moment ago.
            async with store.connection() as conn:
                system = await repository.system(conn, system_id)
                await repository.record_progress(conn, system, None, _progress(error))
            logger.info("systems/%s: no fingerprint yet: %s", system_id, error.message)
            continue
        async with store.connection() as conn:
            system = await repository.system(conn, system_id)
            await repository.record_progress(conn, system, None, None)
        logger.info("built %s", message.name)
        built += 1
    return built


async def refine_stale(store: Store, settings: FingerprintSettings) -> int:
    """Refine every system's newest fingerprint that has newer samples; returns how many."""
    async with store.connection() as conn:
        stale = await repository.stale(conn)
    refined = 0
    for system_id, fingerprint_id in stale:
        try:
            _, merged = await refine(store, settings, system_id, str(fingerprint_id))
        except FailedPrecondition as error:
            logger.info("not refined: %s", error.message)
            continue
        refined += merged > 0
    return refined
