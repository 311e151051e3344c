"""Which group weights find a system's own family: a sweep on generated fleets with ground truth.

The fleets come from ``fleet_quality``'s generator (families that differ in hardware and
workload, configurations that differ within a family, three response models, noise).
Each system's fingerprint is built in process from its current configuration's window,
as the fingerprint service builds it, and embedded; then, for each candidate setting,
the similarity index is built on the fleet and scored:

- ``precision_at_5``: share of each system's 5 nearest that are of its family;
- ``cohort_ari``: adjusted Rand index of the cohorts against the families.

Three kinds of fleet, so that no weight wins only because one group happens to separate
this generator's families: ``distinct`` (every family has its own hardware),
``shared-hardware`` (families come in pairs on the same hardware, told apart only by
their workload and behaviour) and ``shared-hardware-and-workload`` (pairs on the same
hardware serving the same workload, told apart only by how they respond to load: each
pair has two response models). Figures are means over ``--seeds`` fleets of each kind.

Prints one JSON object: per setting, the figures for each kind and their mean.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import adjusted_rand_score

from benchmarks.fleet_quality import (
    FAMILIES,
    GIB,
    Machine,
    changed_config,
    fleet_of,
    machine_series,
    start_config,
)
from cfgclone import vocabulary
from cfgclone.behaviour import SampleSeries, SystemProfile, build_fingerprint, embed
from cfgclone.similarity import (
    DEFAULT_GROUP_WEIGHTS,
    FleetEntry,
    SimilarityIndex,
    SimilaritySettings,
)
from cfgclone.similarity.fleet import default_layout

BEHAVIOUR = ("curves", "distribution", "correlations")


def _weights(hardware: float, workload: float, behaviour: float) -> dict[str, float]:
    return {"hardware": hardware, "workload": workload} | dict.fromkeys(BEHAVIOUR, behaviour)


def candidates() -> dict[str, SimilaritySettings]:
    """The settings compared: the default, single groups, and the default moved one way
    at a time (behaviour weight, value range, cosine instead of value by value)."""
    found = {
        "default": SimilaritySettings(),
        "hardware only": SimilaritySettings(group_weights=_weights(1.0, 0.0, 0.0)),
        "workload only": SimilaritySettings(group_weights=_weights(0.0, 1.0, 0.0)),
        "behaviour only": SimilaritySettings(group_weights=_weights(0.0, 0.0, 1.0)),
        "all equal": SimilaritySettings(group_weights=_weights(1.0, 1.0, 1.0)),
        "curve-led (before)": SimilaritySettings(
            group_weights={
                "hardware": 1.0,
                "workload": 0.0,
                "curves": 2.0,
                "distribution": 1.0,
                "correlations": 0.5,
            },
            value_groups=frozenset(),
        ),
        "cosine for every group": SimilaritySettings(value_groups=frozenset()),
    }
    for behaviour in (0.0, 0.125, 0.5):
        found[f"behaviour {behaviour}"] = SimilaritySettings(
            group_weights=_weights(1.0, 1.0, behaviour)
        )
    for workload in (0.5, 2.0):
        found[f"workload {workload}"] = SimilaritySettings(
            group_weights=_weights(1.0, workload, 0.25)
        )
    for value_range in (0.5, 2.0):
        found[f"value range {value_range}"] = SimilaritySettings(value_range=value_range)
    return found


KINDS = ("distinct", "shared-hardware", "shared-hardware-and-workload")


def _machines(kind: str, per_family: int, seed: int) -> list[Machine]:
    machines = fleet_of(len(FAMILIES), per_family, seed)
    if kind == "distinct":
        return machines
    # Families in pairs: the second of each pair takes the first's machine type (and,
    # for the last kind, its workload: level, swing, request mix).
    found = []
    for machine in machines:
        own = machine.family
        partner = FAMILIES[FAMILIES.index(own) // 2 * 2]
        family, load = own, machine.load
        if kind == "shared-hardware-and-workload":
            family = dataclasses.replace(
                own,
                load=partner.load,
                swing=partner.swing,
                request_kib=partner.request_kib,
                response_ratio=partner.response_ratio,
            )
            load = machine.load / own.load * partner.load
        found.append(
            dataclasses.replace(
                machine,
                family=family,
                cores=partner.cores,
                memory_gib=partner.memory_gib,
                load=load,
            )
        )
    return found


def embedded_fleet(
    kind: str, per_family: int, seed: int, versions: int, minutes: int
) -> tuple[list[str], list[str], NDArray[np.float32]]:
    """Ids, families and embeddings of one generated fleet."""
    end = datetime(2026, 1, 1, 12, tzinfo=UTC)
    start = end - timedelta(minutes=minutes)
    ids, families, rows = [], [], []
    for machine in _machines(kind, per_family, seed):
        rng = np.random.default_rng(machine.seed)
        config = start_config(machine, rng)
        for _ in range(versions - 1):
            config = changed_config(config, rng)
        series = machine_series(machine, config, start, end, rng)
        fingerprint = build_fingerprint(
            {name: SampleSeries(ts, values) for name, (ts, values) in series.items()},
            preferred_load_metrics=vocabulary.OFFERED_LOAD,
            system=SystemProfile(
                cpu_cores=machine.cores,
                memory_bytes=machine.memory_gib * GIB,
                architecture="x86_64",
                os="debian 12",
            ),
        )
        ids.append(machine.name)
        families.append(machine.family.name)
        rows.append(embed(fingerprint).vector)
    return ids, families, np.stack(rows)


def score(
    settings: SimilaritySettings,
    ids: list[str],
    families: list[str],
    embeddings: NDArray[np.float32],
) -> tuple[float, float]:
    """precision@5 and cohort ARI of one setting on one fleet."""
    index = SimilarityIndex(default_layout(), settings)
    index.rebuild(FleetEntry(i, row) for i, row in zip(ids, embeddings, strict=True))
    family = dict(zip(ids, families, strict=True))
    hits = [
        family[answer.second] == family[system_id]
        for system_id in ids
        for answer in index.nearest(system_id, 5)
    ]
    member_of = {m: cohort.cohort_id for cohort in index.cohorts() for m in cohort.members}
    ari = adjusted_rand_score(families, [member_of[i] for i in ids])
    return float(np.mean(hits)), float(ari)


def _mean(figures: list[tuple[float, float]]) -> Mapping[str, float]:
    precision, ari = np.mean(np.asarray(figures), axis=0)
    return {"precision_at_5": round(float(precision), 3), "cohort_ari": round(float(ari), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (default)")
    parser.add_argument("--seeds", type=int, default=3, help="fleets of each kind")
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--per-family", type=int, default=6)
    parser.add_argument("--versions", type=int, default=7)
    parser.add_argument("--minutes", type=int, default=120, help="the fingerprint's window")
    args = parser.parse_args()
    started = time.monotonic()
    kinds = KINDS
    fleets = {
        kind: [
            embedded_fleet(kind, args.per_family, seed, args.versions, args.minutes)
            for seed in range(args.first_seed, args.first_seed + args.seeds)
        ]
        for kind in kinds
    }
    results: dict[str, object] = {}
    for name, settings in candidates().items():
        by_kind = {kind: [score(settings, *fleet) for fleet in fleets[kind]] for kind in kinds}
        results[name] = {
            **{kind: _mean(figures) for kind, figures in by_kind.items()},
            "mean": _mean([f for figures in by_kind.values() for f in figures]),
        }
    json.dump(
        {
            "benchmark": "similarity_weights",
            "families": len(FAMILIES),
            "per_family": args.per_family,
            "seeds": args.seeds,
            "default_weights": dict(DEFAULT_GROUP_WEIGHTS),
            "settings": results,
            "elapsed_s": round(time.monotonic() - started, 1),
        },
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
