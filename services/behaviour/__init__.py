"""cfgclone fingerprint."""

from __future__ import annotations

# The protobuf conversion lives in cfgclone.behaviour.codec and is imported from
# there by the servicer, so that the model itself stays free of generated code.
from cfgclone.behaviour.build import (
    DEFAULT_ALIGN_NS,
    SampleSeries,
    build_fingerprint,
    refine_fingerprint,
    resolve_load_metric,
)
from cfgclone.behaviour.correlation import PairMoments
from cfgclone.behaviour.curves import LoadCurve
from cfgclone.behaviour.embedding import (
    DEFAULT_EMBEDDING_LAYOUT,
    STANDARD_KPIS,
    Embedding,
    EmbeddingGroup,
    EmbeddingLayout,
    embed,
)
from cfgclone.behaviour.errors import (
    FingerprintError,
    IncompatibleFingerprint,
    InsufficientData,
    InvalidSamples,
)
from cfgclone.behaviour.model import (
    DEFAULT_LOAD_METRIC,
    DEFAULT_MIN_REGIME_COUNT,
    MODEL_VERSION,
    Fingerprint,
    FingerprintQuality,
    KpiProfile,
    SystemProfile,
)
from cfgclone.behaviour.regimes import DEFAULT_LOAD_SCALE, LoadScale, RegimeStats
from cfgclone.behaviour.sketch import DEFAULT_RELATIVE_ACCURACY, QuantileSketch

__all__ = [
    "DEFAULT_ALIGN_NS",
    "DEFAULT_EMBEDDING_LAYOUT",
    "DEFAULT_LOAD_METRIC",
    "DEFAULT_LOAD_SCALE",
    "DEFAULT_MIN_REGIME_COUNT",
    "DEFAULT_RELATIVE_ACCURACY",
    "MODEL_VERSION",
    "STANDARD_KPIS",
    "Embedding",
    "EmbeddingGroup",
    "EmbeddingLayout",
    "Fingerprint",
    "FingerprintError",
    "FingerprintQuality",
    "IncompatibleFingerprint",
    "InsufficientData",
    "InvalidSamples",
    "KpiProfile",
    "LoadCurve",
    "LoadScale",
    "PairMoments",
    "QuantileSketch",
    "RegimeStats",
    "SampleSeries",
    "SystemProfile",
    "build_fingerprint",
    "embed",
    "refine_fingerprint",
    "resolve_load_metric",
]
