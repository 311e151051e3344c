"""The history learner: borrowing similar systems' history, and refusing to guess."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cfgclone.adaptation import schema_for
from cfgclone.predictor.change import ConfigurationDelta
from cfgclone.predictor.codec import Content
from cfgclone.predictor.features import Resources, change_features
from cfgclone.predictor.learned import (
    MODEL_FORMAT,
    ChangeRecord,
    HistoryLearner,
    HistorySettings,
)
from cfgclone.predictor.verdict import Verdict

TARGET = "systems/db-a"
DB_A = (1.0, 0.1, 0.0)
DB_B = (0.95, 0.15, 0.05)
DB_C = (1.0, 0.05, 0.1)
WEB = (0.0, 0.2, 1.0)

DOUBLE_BUFFERS = ConfigurationDelta.between({"shared_buffers": 1024}, {"shared_buffers": 2048})
HALVE_BUFFERS = ConfigurationDelta.between({"shared_buffers": 1024}, {"shared_buffers": 512})


def record(
    rng: np.random.Generator, system: str, embedding: tuple[float, ...], ratio: float, effect: float
) -> ChangeRecord:
    """A change of shared_buffers by ``ratio``: latency moves by ``effect`` per doubling."""
    delta = ConfigurationDelta.between(
        {"shared_buffers": 1024, "wal_level": "replica"},
        {"shared_buffers": round(1024 * ratio), "wal_level": "replica"},
    )
    latency = math.expm1(effect * math.log2(ratio) + rng.normal(0.0, 0.02))
    return ChangeRecord(
        system=system,
        embedding=tuple(np.asarray(embedding) + rng.normal(0.0, 0.01, len(embedding))),
        delta=delta,
        observed={"latency_ms": latency, "cpu_percent": float(rng.normal(0.0, 0.01))},
    )


@pytest.fixture
def fleet_history() -> list[ChangeRecord]:
    """Two changes on the target; a dozen on each of two look-alikes, where more buffers
    cut latency; a dozen on a web node, where they raise it."""
    rng = np.random.default_rng(3)
    ratios = [0.25, 0.5, 2.0, 4.0, 8.0]
    history = [record(rng, TARGET, DB_A, r, -0.2) for r in (2.0, 0.5)]
    for system, embedding in (("systems/db-b", DB_B), ("systems/db-c", DB_C)):
        history += [record(rng, system, embedding, r, -0.2) for r in rng.choice(ratios, 12)]
    history += [record(rng, "systems/web-x", WEB, r, +0.3) for r in rng.choice(ratios, 12)]
    return history


def test_too_few_examples_is_inconclusive_with_the_reason(
    fleet_history: list[ChangeRecord],
) -> None:
    own = [r for r in fleet_history if r.system == TARGET]

    prediction = HistoryLearner().fit(own, target=TARGET, embedding=DB_A).predict(DOUBLE_BUFFERS)

    latency = prediction.result("latency_ms")
    assert latency.verdict is Verdict.INCONCLUSIVE
    assert latency.interval is None
    assert latency.relative_change is None
    assert "only 2.0 weighted examples" in latency.explanation
    assert "need 8" in latency.explanation


def test_borrowing_similar_systems_gives_a_confident_verdict(
    fleet_history: list[ChangeRecord],
) -> None:
    model = HistoryLearner().fit(fleet_history, target=TARGET, embedding=DB_A)

    doubled = model.predict(DOUBLE_BUFFERS).result("latency_ms")
    halved = model.predict(HALVE_BUFFERS).result("latency_ms")
    cpu = model.predict(DOUBLE_BUFFERS).result("cpu_percent")

    # The look-alikes' effect (-18% per doubling), not the web node's (+23%).
    assert doubled.verdict is Verdict.POSITIVE
    assert doubled.relative_change == pytest.approx(math.expm1(-0.2), abs=0.05)
    assert doubled.interval is not None
    assert doubled.interval.high < -0.05
    assert halved.verdict is Verdict.NEGATIVE
    assert halved.relative_change == pytest.approx(math.expm1(0.2), abs=0.05)
    assert cpu.verdict is Verdict.NEUTRAL
    assert doubled.evidence_count == 26  # the web node's dozen carry no weight


def test_examples_are_weighted_by_similarity_to_the_target(
    fleet_history: list[ChangeRecord],
) -> None:
    learner = HistoryLearner()

    by_cosine = learner.example_weights(fleet_history, target=TARGET, embedding=DB_A)
    by_engine = learner.example_weights(
        fleet_history,
        target=TARGET,
        embedding=DB_A,
        similarity={"systems/db-b": 0.9, "systems/db-c": 0.4, "systems/web-x": 0.7},
    )

    systems = [r.system for r in fleet_history]
    cosine = dict(zip(systems, by_cosine, strict=True))
    engine = dict(zip(systems, by_engine, strict=True))
    assert cosine[TARGET] == 1.0
    assert 0.95 < cosine["systems/db-b"] < 1.0
    assert cosine["systems/web-x"] == 0.0
    # The similarity engine's scores win; below min_similarity a system is not used.
    assert engine == {
        TARGET: 1.0,
        "systems/db-b": 0.9,
        "systems/db-c": 0.0,
        "systems/web-x": 0.7,
    }


def test_dissimilar_history_alone_is_not_borrowed(fleet_history: list[ChangeRecord]) -> None:
    own_and_web = [r for r in fleet_history if r.system in (TARGET, "systems/web-x")]

    model = HistoryLearner().fit(own_and_web, target=TARGET, embedding=DB_A)

    assert model.predict(DOUBLE_BUFFERS).result("latency_ms").verdict is Verdict.INCONCLUSIVE


def test_a_parameter_the_history_never_changed_is_inconclusive(
    fleet_history: list[ChangeRecord],
) -> None:
    model = HistoryLearner().fit(fleet_history, target=TARGET, embedding=DB_A)
    other = ConfigurationDelta.between({"work_mem": 4}, {"work_mem": 64})

    prediction = model.predict(other, kpis=["latency_ms", "disk_iops"])

    assert [r.verdict for r in prediction.kpis] == [Verdict.INCONCLUSIVE] * 2
    assert "work_mem never changed" in prediction.result("latency_ms").explanation
    assert "never observed" in prediction.result("disk_iops").explanation


def test_evidence_must_cover_the_changed_parameters(fleet_history: list[ChangeRecord]) -> None:
    rng = np.random.default_rng(9)
    rare = ConfigurationDelta.between({"jit": True}, {"jit": False})
    history = [
        *fleet_history,
        *(
            ChangeRecord(TARGET, DB_A, rare, {"latency_ms": float(rng.normal(0.3, 0.01))})
            for _ in range(3)
        ),
    ]

    model = HistoryLearner().fit(history, target=TARGET, embedding=DB_A)
    latency = model.predict(rare).result("latency_ms")

    assert latency.verdict is Verdict.INCONCLUSIVE
    assert "only 3.0 weighted examples changed jit" in latency.explanation


def test_model_version_is_a_digest_of_what_it_learned_from(
    fleet_history: list[ChangeRecord],
) -> None:
    learner = HistoryLearner(HistorySettings(trees=20))

    first = learner.fit(fleet_history, target=TARGET, embedding=DB_A).version
    again = learner.fit(fleet_history, target=TARGET, embedding=DB_A).version
    fewer = learner.fit(fleet_history[:-1], target=TARGET, embedding=DB_A).version

    assert first.startswith(f"history/{MODEL_FORMAT}/")
    assert first == again
    assert fewer != first


def test_embeddings_must_have_the_targets_length(fleet_history: list[ChangeRecord]) -> None:
    with pytest.raises(ValueError, match="embedding of length 3"):
        HistoryLearner().fit(fleet_history, target=TARGET, embedding=(1.0, 0.0))


def test_an_effect_learned_per_core_holds_on_a_machine_size_the_history_never_had() -> None:
    """Workers past two per core thrash. The history has 4- and 32-core machines, the
    target 8 cores: the same fourfold change of ``workers`` is harmless on a machine where
    it stays under two per core and harmful where it goes past, which only the features
    relative to the hardware (workers per core, from the kind's schema) can tell."""
    schema = schema_for("simulated")
    rng = np.random.default_rng(14)

    def thrash(per_core: float) -> float:
        return 0.5 * max(per_core - 2.0, 0.0) ** 2

    def change(cores: int, before: int, after: int) -> tuple[ConfigurationDelta, dict[str, float]]:
        old, new = {"workers": before}, {"workers": after}
        context = change_features(old, new, schema, Resources(cores, cores * 4 << 30, 100.0))
        return ConfigurationDelta.between(old, new), context

    history = []
    for index in range(120):
        cores = (4, 32)[index % 2]
        before = max(1, round(cores * float(rng.choice([0.25, 0.5, 1.0, 2.0]))))
        after = max(1, round(before * float(rng.choice([0.5, 2.0, 4.0]))))
        delta, context = change(cores, before, after)
        effect = thrash(after / cores) - thrash(before / cores) + rng.normal(0.0, 0.01)
        history.append(
            ChangeRecord(
                system=f"systems/m{index % 10}",
                embedding=(1.0, 0.0),
                delta=delta,
                observed={"latency_ms": math.expm1(effect)},
                context=context,
            )
        )
    model = HistoryLearner().fit(history, target="systems/new", embedding=(1.0, 0.0))

    def verdict(cores: int, before: int, after: int) -> Verdict:
        delta, context = change(cores, before, after)
        return model.predict(delta, ["latency_ms"], context).result("latency_ms").verdict

    # Both fourfold: 0.25 -> 1 per core stays calm, 1 -> 4 per core thrashes.
    assert verdict(8, 2, 8) is Verdict.NEUTRAL
    assert verdict(8, 8, 32) is Verdict.NEGATIVE


def test_an_effect_that_grows_with_the_load_extrapolates_with_the_change() -> None:
    """How far a change moves latency depends on where the machine stands: here more
    cache helps a busy machine and costs an idle one, by a share per doubling that grows
    with its utilisation. Learned from doublings and halvings only, an eightfold change on
    a busy machine is predicted as about three doublings' worth, which needs the change
    times the utilisation as a feature: trees alone stop at the largest change seen."""
    schema = schema_for("simulated")
    rng = np.random.default_rng(15)

    def change(
        utilization: float, ratio: float
    ) -> tuple[ConfigurationDelta, dict[str, float], float]:
        old: Content = {"cache_mb": 1024}
        new: Content = {"cache_mb": round(1024 * ratio)}
        resources = Resources(8, 32 << 30, 100.0, 150.0, utilization)
        context = change_features(old, new, schema, resources)
        effect = 0.3 * (0.5 - utilization) * math.log2(ratio)
        return ConfigurationDelta.between(old, new), context, effect

    history = []
    for index in range(60):
        utilization = float(rng.uniform(0.1, 0.9))
        delta, context, effect = change(utilization, float(rng.choice([0.5, 2.0])))
        history.append(
            ChangeRecord(
                system=f"systems/m{index % 6}",
                embedding=(1.0, 0.0),
                delta=delta,
                observed={"latency_ms": math.expm1(effect + rng.normal(0.0, 0.005))},
                context=context,
            )
        )
    model = HistoryLearner().fit(history, target="systems/new", embedding=(1.0, 0.0))

    def predicted(utilization: float, ratio: float) -> float:
        delta, context, _ = change(utilization, ratio)
        found = model.predict(delta, ["latency_ms"], context).result("latency_ms")
        assert found.relative_change is not None
        return math.log1p(found.relative_change)

    busy = predicted(0.85, 8.0)
    idle = predicted(0.15, 8.0)
    assert busy == pytest.approx(0.3 * (0.5 - 0.85) * 3, abs=0.1)
    assert idle == pytest.approx(0.3 * (0.5 - 0.15) * 3, abs=0.1)
