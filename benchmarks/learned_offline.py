"""The learned predictor on fleet_quality's fleet, in process: a loop of seconds, not minutes.

``benchmarks/fleet_quality.py`` measures the learned PredictImpact through the public API
of the running suite, which takes 20-40 minutes. This builds the same fleet (the same
generator, seeds and proposals), measures each past change's training example the way
the history import does (load-matched fingerprints of the stretches before and after it,
:func:`cfgclone.predictor.features.change_features` for the context), trains
:class:`~cfgclone.predictor.learned.HistoryLearner` per system with the neighbours
weighted by embedding similarity (the service's fallback when the similarity service is
unreachable), predicts every proposal and reads it with the default policy. It prints the
same quality figures (``harmful_auc``, ``harmful_precision``, ``harmful_recall``,
``decided_share``) as one JSON object per seed, and the in-process prediction time.

The similarity service's scores are not used, so the figures differ from the service's
somewhat; the loop is for comparing predictor changes against each other, across seeds,
and the real benchmark confirms the one kept.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks.fleet_quality import (
    GIB,
    LATENCY,
    Machine,
    _harmful,
    changed_config,
    fleet_of,
    machine_series,
    start_config,
)
from cfgclone.adaptation.builtin import SIMULATED
from cfgclone.behaviour.build import SampleSeries, build_fingerprint, resolve_load_metric
from cfgclone.behaviour.comparison import compare
from cfgclone.behaviour.embedding import embed
from cfgclone.behaviour.errors import FingerprintError
from cfgclone.behaviour.model import Fingerprint, SystemProfile
from cfgclone.behaviour.regimes import LoadScale
from cfgclone.predictor.change import ConfigurationDelta
from cfgclone.predictor.codec import Content
from cfgclone.predictor.features import Resources, change_features
from cfgclone.predictor.learned import ChangeRecord, HistoryLearner, HistorySettings
from cfgclone.predictor.policy import DEFAULT_POLICY
from cfgclone.predictor.verdict import Verdict
from cfgclone.vocabulary import CPU_UTILIZATION

Series = dict[str, SampleSeries]


@dataclass(frozen=True)
class Proposal:
    system: str
    machine: Machine
    before: Content
    after: Content
    context: dict[str, float]
    harmful: bool


@dataclass(frozen=True)
class Fleet:
    records: list[ChangeRecord]
    embeddings: dict[str, tuple[float, ...]]
    proposals: list[Proposal]


def _content(config: dict[str, object]) -> Content:
    """A generated configuration as the predictor reads one."""
    out: Content = {}
    for name, value in config.items():
        assert isinstance(value, int | float | bool | str)
        out[name] = value
    return out


def _profile(machine: Machine) -> SystemProfile:
    return SystemProfile(
        cpu_cores=machine.cores,
        memory_bytes=machine.memory_gib * GIB,
        architecture="x86_64",
        os="debian 12",
    )


def _series(found: dict[str, tuple[np.ndarray, np.ndarray]]) -> Series:
    return {name: SampleSeries(ts, values) for name, (ts, values) in found.items()}


def _resources(machine: Machine, fingerprint: Fingerprint) -> Resources:
    cpu = fingerprint.profiles.get(CPU_UTILIZATION.name)
    utilization = cpu.overall().mean if cpu is not None and cpu.count > 0 else None
    return Resources(
        machine.cores,
        machine.memory_gib * GIB,
        fingerprint.load_profile.overall().mean,
        fingerprint.load_max,
        utilization,
    )


def _example(
    machine: Machine, before: Series, after: Series
) -> tuple[Fingerprint, dict[str, float]] | None:
    """As the history import measures one past change (``history._example``)."""
    try:
        load = resolve_load_metric(before, None)
        scale = LoadScale.spanning(np.concatenate([before[load].values, after[load].values]))
        first = build_fingerprint(
            before, load_metric=load, system=_profile(machine), scale=scale, min_regime_count=5.0
        )
        second = build_fingerprint(
            after, load_metric=load, system=_profile(machine), scale=scale, min_regime_count=5.0
        )
    except FingerprintError:
        return None
    observed = {
        d.kpi: d.relative_change
        for d in compare(first, second)
        if d.kpi and d.kpi != first.load_metric
    }
    return (first, observed) if observed else None


def build(
    seed: int,
    families: int,
    per_family: int,
    versions: int,
    minutes: int,
    proposals: int,
    hour: int = 12,
) -> Fleet:
    """The fleet's training examples and proposals, as fleet_quality makes them."""
    fleet = fleet_of(families, per_family, seed)
    window = timedelta(minutes=minutes)
    now = datetime(2026, 12, 1, hour, 0, tzinfo=UTC)
    begin = now - window * versions
    records: list[ChangeRecord] = []
    embeddings: dict[str, tuple[float, ...]] = {}
    found: list[Proposal] = []
    for machine in fleet:
        system = f"systems/{machine.name}"
        rng = np.random.default_rng(machine.seed)
        generated = [start_config(machine, rng)]
        for _ in range(versions - 1):
            generated.append(changed_config(generated[-1], rng))
        configs = [_content(config) for config in generated]
        stretches = []
        for index, config in enumerate(generated):
            start = begin + window * index
            end = start + window if index + 1 < len(configs) else now
            stretches.append(_series(machine_series(machine, config, start, end, rng)))
        for index in range(1, len(configs)):
            measured = _example(machine, stretches[index - 1], stretches[index])
            if measured is None:
                continue
            first, observed = measured
            context = change_features(
                configs[index - 1], configs[index], SIMULATED, _resources(machine, first)
            )
            records.append(
                ChangeRecord(
                    system=system,
                    embedding=tuple(float(v) for v in embed(first).vector),
                    delta=ConfigurationDelta.between(configs[index - 1], configs[index]),
                    observed=observed,
                    context=context,
                )
            )
        latest = build_fingerprint(stretches[-1], system=_profile(machine))
        embeddings[system] = tuple(float(v) for v in embed(latest).vector)
        current = generated[-1]
        prng = np.random.default_rng(machine.seed + 1)
        for _ in range(proposals):
            proposed = changed_config(current, prng)
            while proposed == current:
                proposed = changed_config(current, prng)
            before, after = _content(current), _content(proposed)
            context = change_features(before, after, SIMULATED, _resources(machine, latest))
            harmful = _harmful(machine, current, proposed)
            found.append(Proposal(system, machine, before, after, context, harmful))
    return Fleet(records, embeddings, found)


def evaluate(fleet: Fleet, learner: HistoryLearner, *, one_model: bool) -> dict[str, object]:
    """Quality of the learner's predictions of the fleet's proposals, read by the default
    policy, as fleet_quality counts them. With ``one_model``, one model of every system's
    history weighted alike (the service's fleet model) predicts for every system: one fit
    instead of one per system."""
    harmful, predicted, verdicts, elapsed = [], [], [], []
    models = {}
    fit_started = time.perf_counter()
    if one_model:
        alike = {system: 1.0 for system in fleet.embeddings}
        size = len(next(iter(fleet.embeddings.values())))
        fleet_model = learner.fit(
            fleet.records, target="fleet", embedding=(0.0,) * size, similarity=alike
        )
        models = dict.fromkeys(fleet.embeddings, fleet_model)
    else:
        for system, embedding in fleet.embeddings.items():
            models[system] = learner.fit(fleet.records, target=system, embedding=embedding)
    fit_s = time.perf_counter() - fit_started
    by_kpi: dict[str, dict[str, dict[str, int]]] = {}
    for proposal in fleet.proposals:
        model = models[proposal.system]
        delta = ConfigurationDelta.between(proposal.before, proposal.after)
        confidence = {kpi: DEFAULT_POLICY.confidence_for(kpi) for kpi in model.kpis}
        started = time.perf_counter()
        prediction = model.predict(delta, context=proposal.context, confidence=confidence)
        elapsed.append((time.perf_counter() - started) * 1000.0)
        reading = DEFAULT_POLICY.verdict(prediction.kpis)
        side = "harmful" if proposal.harmful else "harmless"
        for kpi in reading.kpis:
            counts = by_kpi.setdefault(kpi.kpi, {}).setdefault(side, {})
            counts[kpi.verdict.value] = counts.get(kpi.verdict.value, 0) + 1
        latency = next((k for k in prediction.kpis if k.kpi == LATENCY), None)
        estimate = latency.relative_change if latency and latency.relative_change else 0.0
        harmful.append(proposal.harmful)
        predicted.append(estimate)
        verdicts.append(reading.verdict)
    truth = np.asarray(harmful)
    decided = np.asarray([v not in (Verdict.INCONCLUSIVE, Verdict.NODATA) for v in verdicts])
    flagged = np.asarray([v is Verdict.NEGATIVE for v in verdicts])
    hits = int(np.sum(flagged & truth))
    return {
        "examples": len(fleet.records),
        "changes": int(truth.size),
        "harmful_changes": int(truth.sum()),
        "harmful_auc": round(float(roc_auc_score(truth, predicted)), 4),
        "harmful_precision": round(hits / max(int(flagged.sum()), 1), 4),
        "harmful_recall": round(hits / max(int(np.sum(truth & decided)), 1), 4),
        "decided_share": round(float(decided.mean()), 4),
        "predict_p99_ms": round(float(np.percentile(elapsed, 99)), 2),
        "fit_s": round(fit_s, 1),
        "kpi_verdicts": by_kpi,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[14, 15])
    parser.add_argument("--families", type=int, default=6)
    parser.add_argument("--per-family", type=int, default=6)
    parser.add_argument("--versions", type=int, default=7)
    parser.add_argument("--version-minutes", type=int, default=120)
    parser.add_argument("--proposals", type=int, default=4)
    parser.add_argument("--distant-weight", type=float, default=0.2, help="as the service's")
    parser.add_argument(
        "--one-model", action="store_true", help="one fleet model for every system (fast)"
    )
    parser.add_argument("--hour", type=int, default=12, help="UTC hour the history ends at")
    args = parser.parse_args()
    learner = HistoryLearner(HistorySettings(distant_weight=args.distant_weight))
    for seed in args.seeds:
        fleet = build(
            seed,
            args.families,
            args.per_family,
            args.versions,
            args.version_minutes,
            args.proposals,
            args.hour,
        )
        result = {"seed": seed, **evaluate(fleet, learner, one_model=args.one_model)}
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
