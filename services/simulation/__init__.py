"""A simulated system and fleet with known response surfaces, for tests, benchmarks and the demo."""

from cfgclone.simulation.system import (
    DEFAULT_EFFECTS,
    HARMFUL_CHANGE,
    HARMLESS_CHANGE,
    MEMORY_FOR_CACHE,
    ParameterEffect,
    ResponseFactors,
    SimulatedSystem,
)

__all__ = [
    "DEFAULT_EFFECTS",
    "HARMFUL_CHANGE",
    "HARMLESS_CHANGE",
    "MEMORY_FOR_CACHE",
    "ParameterEffect",
    "ResponseFactors",
    "SimulatedSystem",
]
