"""A fleet of real fingerprints whose families differ only in hardware and workload.

Every system follows one response model (a queue: latency grows as 1 / (1 - load /
capacity)), so nothing in how a system responds to load tells the families apart.
Within a family the configurations differ: each member's capacity and per-request cost
are its own, so its latency curve, CPU level and tail differ from its neighbours' more
than the families' do. Only the machine (cores, memory) and the workload (level, daily
swing, bytes per request) say which family a system belongs to, which is what
similarity for cloning must find.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from cfgclone import vocabulary
from cfgclone.behaviour import SampleSeries, SystemProfile, build_fingerprint, embed

STEP_NS = 10 * 1_000_000_000
SAMPLES = 720  # two hours at 10 s


@dataclass(frozen=True)
class CloneFamily:
    name: str
    cores: int
    memory_gib: int
    load: float
    """Typical offered load, requests per second."""
    swing: float
    """Relative amplitude of the load's cycle over the window."""
    request_kib: float
    response_ratio: float


CLONE_FAMILIES = (
    CloneFamily("tiny", 2, 4, 40.0, 0.6, 4.0, 8.0),
    CloneFamily("small", 4, 8, 120.0, 0.5, 2.0, 20.0),
    CloneFamily("medium", 8, 32, 300.0, 0.7, 1.0, 6.0),
    CloneFamily("memory", 8, 128, 700.0, 0.4, 0.5, 30.0),
    CloneFamily("batch", 16, 64, 200.0, 0.2, 64.0, 0.5),
    CloneFamily("large", 32, 256, 900.0, 0.3, 8.0, 4.0),
)


def clone_system(family: CloneFamily, rng: np.random.Generator) -> NDArray[np.float32]:
    """The embedding of one member: the family's machine and workload, its own configuration."""
    capacity = family.load * (1.0 + family.swing) / float(rng.uniform(0.45, 0.95))
    service = 0.01 * float(rng.choice([0.6, 1.0, 1.5, 2.5]))  # cache, logging, workers
    ts = np.arange(SAMPLES, dtype=np.int64) * STEP_NS
    phase = 2.0 * np.pi * np.arange(SAMPLES) / SAMPLES
    load = family.load * (1.0 + family.swing * np.sin(phase)) * rng.lognormal(0.0, 0.08, SAMPLES)
    utilisation = np.minimum(load / capacity, 0.97)
    latency = service / (1.0 - utilisation) * rng.lognormal(0.0, 0.05, SAMPLES)
    cpu = np.clip(0.03 + 0.85 * utilisation * service / 0.01 + rng.normal(0.0, 0.01), 0.0, 1.0)
    received = load * family.request_kib * 1024.0 * rng.lognormal(0.0, 0.1, SAMPLES)
    sent = received * family.response_ratio * rng.lognormal(0.0, 0.1, SAMPLES)
    series = {
        vocabulary.HTTP_REQUEST_RATE.name: load,
        vocabulary.HTTP_REQUEST_DURATION.name: latency,
        vocabulary.CPU_UTILIZATION.name: cpu,
        vocabulary.NETWORK_RECEIVE.name: received,
        vocabulary.NETWORK_TRANSMIT.name: sent,
    }
    fingerprint = build_fingerprint(
        {name: SampleSeries(ts, values) for name, values in series.items()},
        preferred_load_metrics=vocabulary.OFFERED_LOAD,
        system=SystemProfile(
            cpu_cores=family.cores,
            memory_bytes=family.memory_gib * 2**30,
            architecture="x86_64",
            os=str(rng.choice(["debian 12", "ubuntu 24.04", "rocky 9"])),
        ),
    )
    return embed(fingerprint).vector


def clone_fleet(
    members: int = 6, *, seed: int = 0
) -> tuple[list[str], list[str], NDArray[np.float32]]:
    """Ids (`{family}-{member}`), family names and embeddings of the fleet."""
    rng = np.random.default_rng(seed)
    ids, families, rows = [], [], []
    for family in CLONE_FAMILIES:
        for member in range(members):
            ids.append(f"{family.name}-{member}")
            families.append(family.name)
            rows.append(clone_system(family, rng))
    return ids, families, np.stack(rows)
