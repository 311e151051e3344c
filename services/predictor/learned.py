"""Prediction learned from the history of applied changes.

Each applied change leaves a :class:`ChangeRecord`: the system's embedding (its
fingerprint, as the similarity engine sees it), the configuration delta, and the relative
change of each KPI observed by the load-matched before/after comparison. A model trained
on these predicts, for a proposed delta on a target system, each KPI's relative change
with an interval.

Borrowing. A system with little history of its own borrows the history of similar
systems: every record is weighted by how similar its system is to the target (1 for the
target itself, the similarity score in [0, 1] for others, ``distant_weight`` (0 unless
set) below ``min_similarity``), so
a model for a database host learns from other database hosts, not from web nodes.

Evidence. A confident guess from too little evidence is worse than no guess, so each KPI
needs at least ``min_weighted_examples`` of weighted history, and the proposed change
must touch parameters the history has seen changed (with the same weighted minimum);
otherwise the answer is INCONCLUSIVE and says why.

Model. Per KPI, ``log(1 + relative change)`` on the delta features (see
:mod:`cfgclone.predictor.change`), the transferable context (see
:mod:`cfgclone.predictor.features`: hardware, load level, parameters per core and per GiB)
and each delta feature times each context feature (the same change moves a busy machine's
latency more than an idle one's: with these the linear member learns an elasticity that
depends on where the machine stands, and extrapolates it to larger changes), trained
with the example weights by the predictor's one learner
(:mod:`cfgclone.predictor.estimator`, the model the configperf benchmark measures): a
stack of a ridge regression (an elasticity extrapolates; trees cannot), gradient boosted
and extremely randomised trees, whose CV+ interval is as wide as the model's errors on
history it did not train on, at the confidence the policy sets per KPI.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from cfgclone.predictor.change import (
    DEFAULT_DIRECTIONS,
    ConfigurationDelta,
    DirectionTable,
    KpiDirection,
    UnknownKpiDirection,
)
from cfgclone.predictor.estimator import Estimator, EstimatorSettings, FittedEstimator
from cfgclone.predictor.verdict import (
    Interval,
    KpiResult,
    Verdict,
    classify_interval,
    format_change,
)

FloatArray = npt.NDArray[np.float64]

MODEL_FORMAT = 5
"""Version of the model's recipe; part of every model version string."""

_SMALLEST_CHANGE = -0.99
"""Observed relative changes are clipped here: ``log(1 + change)`` needs ``change > -1``."""


@dataclass(frozen=True)
class ChangeRecord:
    """One applied change and what it did."""

    system: str
    """Resource name of the system, ``systems/{id}``."""
    embedding: tuple[float, ...]
    """The system's fingerprint embedding when the change was applied."""
    delta: ConfigurationDelta
    observed: Mapping[str, float]
    """KPI name -> observed relative change, load-matched before/after."""
    context: Mapping[str, float] = field(default_factory=dict)
    """Features of where the change happened that carry over between machines
    (hardware, load level, parameters per core and per GiB; see
    :mod:`cfgclone.predictor.features`)."""


@dataclass(frozen=True)
class HistorySettings:
    """How :class:`HistoryLearner` weighs evidence."""

    min_weighted_examples: float = 8.0
    """Least weighted history a KPI, and the parameters of a change, need."""
    min_similarity: float = 0.5
    """Records of systems less similar to the target than this get ``distant_weight``."""
    distant_weight: float = 0.0
    """Weight of the records of systems below ``min_similarity``: 0 leaves them out; a
    small weight lets a system with little similar history learn from the whole fleet,
    whose features (hardware, load, parameters per core and per GiB) carry over."""
    confidence: float = 0.9
    """Confidence of the predicted intervals."""
    tolerance: float = 0.05
    """Smallest relative change in the bad direction that matters, for per-KPI verdicts."""
    trees: int = 100
    """Trees of each tree member of each KPI's stack; predictions must stay fast (a few ms
    per KPI, every fold model included)."""
    min_samples_leaf: int = 2
    """Fewest records a leaf may hold, so that no record is predicted from itself alone."""
    ridge_alpha: float = 1.0
    """Regularisation of the linear member, on standardised features."""
    embedding_features: bool = False
    """Whether the embedding's values are features too. They are the levels of one
    machine's own curves and distributions, which do not carry over to another machine,
    and a hundred and more of them drown the few features that do in a history of tens of
    changes; by default the embedding only weighs the history by similarity."""
    folds: int = 5
    """Folds of the cross-validation behind the stacking weights and the intervals."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.min_weighted_examples <= 0:
            raise ValueError("min_weighted_examples must be positive")
        if not 0.0 <= self.min_similarity <= 1.0:
            raise ValueError("min_similarity must be in [0, 1]")
        if not 0.0 <= self.distant_weight <= self.min_similarity:
            raise ValueError("distant_weight must be in [0, min_similarity]")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError("confidence must be in (0, 1)")
        if self.trees < 10:
            raise ValueError("trees must be at least 10")

    def estimator(self, examples: int) -> Estimator:
        """The learner of one KPI from ``examples`` weighted examples."""
        return Estimator(
            EstimatorSettings(
                folds=min(self.folds, examples),
                boosting_estimators=self.trees,
                learning_rate=0.1,
                extra_trees_estimators=self.trees,
                min_samples_leaf=self.min_samples_leaf,
                ridge_alpha=self.ridge_alpha,
                seed=self.seed,
            )
        )


@dataclass(frozen=True)
class LearnedPrediction:
    """Per-KPI predictions of one change by one trained model."""

    model_version: str
    kpis: tuple[KpiResult, ...]

    def result(self, kpi: str) -> KpiResult:
        """The prediction for one KPI; raises ``KeyError`` when it was not asked for."""
        for result in self.kpis:
            if result.kpi == kpi:
                return result
        raise KeyError(kpi)


@dataclass(frozen=True, eq=False)
class _KpiModel:
    """A trained model of one KPI, or the reason there is none."""

    kpi: str
    direction: KpiDirection
    examples: int
    """Records with a positive weight."""
    weight: float
    """Their total weight."""
    changes: tuple[tuple[frozenset[str], float], ...]
    """Per record used, the parameters it changed and its weight."""
    fitted: FittedEstimator | None = None
    """Of ``log(1 + change)`` on the features in :attr:`vocabulary` order."""
    vocabulary: tuple[str, ...] = ()
    reason: str = ""
    """Why there is no fitted model, when there is none."""


@dataclass(frozen=True, eq=False)
class HistoryModel:
    """A model of the effect of changes on one target system; see the module docstring."""

    version: str
    target: str
    embedding: tuple[float, ...]
    settings: HistorySettings
    directions: DirectionTable
    models: Mapping[str, _KpiModel] = field(repr=False)

    @property
    def kpis(self) -> tuple[str, ...]:
        """KPIs the history mentions, in name order."""
        return tuple(sorted(self.models))

    def for_target(self, target: str, embedding: Sequence[float]) -> HistoryModel:
        """This model predicting for ``target`` as it is now (its current embedding): a
        refined fingerprint need not refit the model, nor does the fleet model for a
        system whose own is being fitted."""
        current = tuple(float(v) for v in embedding)
        if target == self.target and current == self.embedding:
            return self
        if len(current) != len(self.embedding) and self.models:
            return self
        return replace(self, target=target, embedding=current)

    def predict(
        self,
        delta: ConfigurationDelta,
        kpis: Sequence[str] | None = None,
        context: Mapping[str, float] | None = None,
        confidence: Mapping[str, float] | None = None,
    ) -> LearnedPrediction:
        """Predict the relative change of each KPI (default: every KPI in the history).

        ``context`` holds the change's transferable features on the target (as
        :attr:`ChangeRecord.context`). A KPI the history never observed is INCONCLUSIVE,
        not left out. ``confidence`` sets a KPI's interval confidence (default: the
        settings').
        """
        where = dict(context or {})
        levels = dict(confidence or {})
        wanted = list(kpis) if kpis is not None else list(self.kpis)
        results = []
        for kpi in wanted:
            model = self.models.get(kpi)
            if model is None:
                direction = self.directions.direction(kpi)
                why = "never observed in the history used"
                results.append(self._inconclusive(kpi, direction, why, 0))
            else:
                level = levels.get(kpi, self.settings.confidence)
                results.append(self._predict_one(model, delta, where, level))
        return LearnedPrediction(self.version, tuple(results))

    def _inconclusive(
        self, kpi: str, direction: KpiDirection, why: str, examples: int
    ) -> KpiResult:
        return KpiResult(
            kpi=kpi,
            direction=direction,
            verdict=Verdict.INCONCLUSIVE,
            explanation=f"{kpi}: too little evidence: {why}",
            evidence_count=examples,
        )

    def _predict_one(
        self,
        model: _KpiModel,
        delta: ConfigurationDelta,
        context: Mapping[str, float],
        level: float,
    ) -> KpiResult:
        s = self.settings
        if model.fitted is None:
            return self._inconclusive(model.kpi, model.direction, model.reason, model.examples)
        if not delta:
            return KpiResult(
                kpi=model.kpi,
                direction=model.direction,
                verdict=Verdict.NEUTRAL,
                explanation=f"{model.kpi}: the change changes nothing",
                relative_change=0.0,
                evidence_count=model.examples,
            )
        known = frozenset().union(*(changed for changed, _ in model.changes))
        unseen = sorted(delta.changed - known)
        if unseen:
            return self._inconclusive(
                model.kpi,
                model.direction,
                f"{', '.join(unseen)} never changed in the history used",
                model.examples,
            )
        relevant = sum(weight for changed, weight in model.changes if changed & delta.changed)
        if relevant < s.min_weighted_examples:
            return self._inconclusive(
                model.kpi,
                model.direction,
                f"only {relevant:.1f} weighted examples changed "
                f"{', '.join(sorted(delta.changed))} (need {s.min_weighted_examples:g})",
                model.examples,
            )
        embedding = self.embedding if s.embedding_features else ()
        row = _features(embedding, delta, context, model.vocabulary)[None, :]
        centers, lows, highs = model.fitted.interval(row, level)
        change = math.expm1(float(centers[0]))
        interval = Interval(math.expm1(float(lows[0])), math.expm1(float(highs[0])), level)
        verdict = classify_interval(interval, model.direction, s.tolerance)
        reading = {
            Verdict.NEGATIVE: f"worse by more than {s.tolerance:.0%}",
            Verdict.POSITIVE: f"better by more than {s.tolerance:.0%}",
            Verdict.NEUTRAL: f"within {s.tolerance:.0%}",
            Verdict.INCONCLUSIVE: f"the interval straddles {s.tolerance:.0%}",
        }[verdict]
        return KpiResult(
            kpi=model.kpi,
            direction=model.direction,
            verdict=verdict,
            explanation=(
                f"{model.kpi}: {reading}: predicted {format_change(change)} {interval} "
                f"from {model.examples} past changes (weight {model.weight:.1f}, "
                f"{relevant:.1f} on these parameters)"
            ),
            relative_change=change,
            interval=interval,
            evidence_count=model.examples,
        )


@dataclass(frozen=True)
class HistoryLearner:
    """Trains a :class:`HistoryModel` for one target system from the fleet's history."""

    settings: HistorySettings = field(default_factory=HistorySettings)
    directions: DirectionTable = DEFAULT_DIRECTIONS

    def example_weights(
        self,
        history: Sequence[ChangeRecord],
        *,
        target: str,
        embedding: Sequence[float],
        similarity: Mapping[str, float] | None = None,
    ) -> tuple[float, ...]:
        """The weight of each record for ``target``.

        1 for the target's own records; for another system its score in ``similarity``
        (the similarity engine's, in [0, 1]) or, when not given, the cosine similarity of
        the embeddings clipped at 0; ``distant_weight`` below ``min_similarity``.
        """
        weights = []
        for record in history:
            if record.system == target:
                weights.append(1.0)
                continue
            if similarity is not None:
                score = float(similarity.get(record.system, 0.0))
            else:
                score = _cosine(embedding, record.embedding)
            score = min(max(score, 0.0), 1.0)
            s = self.settings
            weights.append(score if score >= s.min_similarity else s.distant_weight)
        return tuple(weights)

    def fit(
        self,
        history: Sequence[ChangeRecord],
        *,
        target: str,
        embedding: Sequence[float],
        similarity: Mapping[str, float] | None = None,
    ) -> HistoryModel:
        """Train per-KPI models for ``target`` (whose current embedding is ``embedding``)."""
        target_embedding = tuple(float(v) for v in embedding)
        for record in history:
            if len(record.embedding) != len(target_embedding):
                raise ValueError(
                    f"{record.system}: embedding of length {len(record.embedding)}, "
                    f"expected {len(target_embedding)}"
                )
        weights = self.example_weights(
            history, target=target, embedding=target_embedding, similarity=similarity
        )
        kpis = sorted({kpi for record in history for kpi in record.observed if self._judged(kpi)})
        models = {kpi: self._fit_kpi(kpi, history, weights) for kpi in kpis}
        return HistoryModel(
            version=self._version(history, weights, target, target_embedding),
            target=target,
            embedding=target_embedding,
            settings=self.settings,
            directions=self.directions,
            models=models,
        )

    def _judged(self, kpi: str) -> bool:
        """Whether ``kpi`` has a known bad direction; a KPI without one cannot be judged,
        so it is not learned (it is INCONCLUSIVE if asked for)."""
        try:
            self.directions.direction(kpi)
        except UnknownKpiDirection:
            return False
        return True

    def _fit_kpi(
        self, kpi: str, history: Sequence[ChangeRecord], weights: Sequence[float]
    ) -> _KpiModel:
        s = self.settings
        direction = self.directions.direction(kpi)
        used = [
            (record, weight)
            for record, weight in zip(history, weights, strict=True)
            if weight > 0 and kpi in record.observed and math.isfinite(record.observed[kpi])
        ]
        total = sum(weight for _, weight in used)
        changes = tuple((record.delta.changed, weight) for record, weight in used)
        base = _KpiModel(kpi, direction, len(used), total, changes)
        if total < s.min_weighted_examples or len(used) < 2 * s.min_samples_leaf:
            return _replace_reason(
                base,
                f"only {total:.1f} weighted examples of {kpi} from {len(used)} changes "
                f"(need {s.min_weighted_examples:g})",
            )
        vocabulary = tuple(
            sorted({f for record, _ in used for f in _named(record.delta, record.context)})
        )
        x = np.vstack(
            [
                _features(
                    record.embedding if s.embedding_features else (),
                    record.delta,
                    record.context,
                    vocabulary,
                )
                for record, _ in used
            ]
        )
        y = np.log1p(np.array([max(record.observed[kpi], _SMALLEST_CHANGE) for record, _ in used]))
        w = np.array([weight for _, weight in used])
        fitted = s.estimator(y.size).fit(x, y, w)
        return _KpiModel(
            kpi,
            direction,
            len(used),
            total,
            changes,
            fitted=fitted,
            vocabulary=vocabulary,
        )

    def _version(
        self,
        history: Sequence[ChangeRecord],
        weights: Sequence[float],
        target: str,
        embedding: tuple[float, ...],
    ) -> str:
        digest = hashlib.sha256()
        digest.update(repr((MODEL_FORMAT, self.settings, target, embedding)).encode())
        for record, weight in zip(history, weights, strict=True):
            digest.update(
                repr(
                    (
                        record.system,
                        record.embedding,
                        sorted(record.delta.features().items()),
                        sorted(record.context.items()),
                        sorted(record.observed.items()),
                        weight,
                    )
                ).encode()
            )
        return f"history/{MODEL_FORMAT}/{digest.hexdigest()[:16]}"


def _replace_reason(model: _KpiModel, reason: str) -> _KpiModel:
    return _KpiModel(
        model.kpi,
        model.direction,
        model.examples,
        model.weight,
        model.changes,
        reason=reason,
    )


def _features(
    embedding: Sequence[float],
    delta: ConfigurationDelta,
    context: Mapping[str, float],
    vocabulary: Sequence[str],
) -> FloatArray:
    """The embedding followed by the delta's and the context's features in vocabulary
    order (0 if absent).

    Features outside the vocabulary are dropped; the caller has already refused changes
    to parameters the history never saw.
    """
    named = _named(delta, context)
    values = [*embedding, *(named.get(name, 0.0) for name in vocabulary)]
    # A history of changes that changed nothing nameable still has a mean to learn.
    return np.array(values or [0.0])


def _named(delta: ConfigurationDelta, context: Mapping[str, float]) -> dict[str, float]:
    """The delta's and the context's features, and each delta feature times each context
    feature: how much a change moves a KPI depends on where the machine stands."""
    changes = delta.features()
    named = {**context, **changes}
    for change, amount in changes.items():
        for where, level in context.items():
            named[f"{change}*{where}"] = amount * level
    return named


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    u = np.asarray(a, dtype=np.float64)
    v = np.asarray(b, dtype=np.float64)
    norm = float(np.linalg.norm(u) * np.linalg.norm(v))
    return float(u @ v) / norm if norm > 0 else 0.0
